"""Monte Carlo tree search over per-step noises: sequential UCT (one simulation's back-up before the next
selection), or rounds of several simulations selected with virtual visits and batched (`parallel`)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from noisesearch import cost
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, SearchAlgorithm, check_positive_int, run_steps
from noisesearch.search.registry import register_algorithm
from noisesearch.types import SearchResult, TreeTrace


@dataclass
class Node:
    """A sampler state x at sigma_step; `step` is the next searchable step (or T once x is x0)."""

    step: int
    x: torch.Tensor
    prior: float = 0.0
    visits: int = 0
    value: float = 0.0
    children: list[Node] = field(default_factory=list)

    def uct_child(self, c_uct: float) -> Node:
        """The child maximising Q/n + c·sqrt(ln n_parent / n); unvisited children first, in order."""
        for child in self.children:
            if child.visits == 0:
                return child
        log_n = math.log(self.visits)
        return max(self.children, key=lambda ch: ch.value / ch.visits + c_uct * math.sqrt(log_n / ch.visits))


class StepRunner:
    """Runs the deterministic (gamma = 0) steps between searchable ones and rollouts to x0."""

    def __init__(self, problem: Problem, gens: SampleGenerators) -> None:
        self.problem, self.gens = problem, gens
        self.steps = problem.sampler.steps
        self.searchable = problem.sampler.searchable_steps()

    def next_searchable(self, step: int) -> int:
        return next((s for s in self.searchable if s >= step), self.steps)

    def run(self, x: torch.Tensor, start: int, stop: int, which: list[int]) -> torch.Tensor:
        """Steps start..stop-1 on x (C', M, ...) of the conditions in `which`, fresh noise where gamma > 0."""
        return run_steps(self.problem, self.gens, x, start, stop, which)[0]


@register_algorithm
@dataclass(frozen=True)
class MCTS(SearchAlgorithm):
    """(N, S) MCTS: at every searchable step, S simulations of select (UCT) → expand (N candidate noises,
    each stepped) → roll out the child with the best x0 prediction to x0 with fresh noise → back up its
    reward, each simulation's back-up before the next selection; then commit the most-visited child
    (keeping its subtree) and descend. Conditions run side by side, batched by the step they expand.

    parallel = P > 1 runs the S simulations in rounds of up to P per condition, selected one after the other
    with virtual visits (each selected path's nodes count one extra visit worth their mean value until the
    round's back-ups, so later selections of the round diverge; a leaf is expanded at most once per round),
    expanded, rolled out and backed up together: P times larger network calls, the same NFE per simulation,
    but a different (no longer sequential) tree policy. P = 1 is the sequential UCT."""

    name = "mcts"
    source = ("Monte Carlo tree search over the step noise (UCT), the tree-search baseline of Ramesh and Mardani, "
              "*Test-Time Scaling of Diffusion Models via Noise Trajectory Search* ([arXiv "
              "2506.03164](https://arxiv.org/abs/2506.03164))")
    family = "tree"
    nfe_doc = ("Σ c_i over the steps before the first searchable one, plus per simulation that expands step j: "
               "N·(c_j + g_j) + r_j, where g_j is Σ c_i over the gamma = 0 steps up to the next searchable step k "
               f"and r_j Σ c_i from k on; a simulation that reaches x0 costs nothing; {CALLS_DOC}")
    searches_step_noise = True
    N: int = 4
    S: int = 8
    c_uct: float = 1.0
    parallel: int = 1

    def __post_init__(self) -> None:
        check_positive_int(N=self.N, S=self.S, parallel=self.parallel)
        if not (math.isfinite(self.c_uct) and self.c_uct >= 0):
            raise NoiseSearchError(f"c_uct must be a non-negative finite number, got {self.c_uct}")

    def nfe_formula(self, sampler: Sampler) -> int | None:
        return None

    def nfe_estimate(self, sampler: Sampler) -> int:
        """As if every simulation expanded the step being committed (later ones go deeper and cost less)."""
        prefix, per_sim = cost.tree_simulation_calls(sampler, self.N)
        return prefix + self.S * sum(per_sim.values())

    def expected_calls(self, sampler: Sampler, result: SearchResult) -> torch.Tensor:
        prefix, per_sim = cost.tree_simulation_calls(sampler, self.N)
        return torch.tensor([prefix + sum(per_sim.get(j, 0) for j in expanded)
                             for expanded in result.trace.expanded_steps])

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, TreeTrace]:
        gens = problem.generators()
        runner = StepRunner(problem, gens)
        c, steps = problem.n, problem.sampler.steps
        everyone = list(range(c))
        first = runner.next_searchable(0)
        x = runner.run(problem.initial_state(gens.randn(1, *problem.image_shape)), 0, first, everyone)
        roots = {k: Node(first, x[k, 0]) for k in everyone}
        expanded: list[list[int]] = [[] for _ in everyone]
        while roots[0].step < steps:
            self._simulate(problem, runner, roots, expanded)
            for k in everyone:
                root = roots[k]
                roots[k] = max(root.children, key=lambda ch: (ch.visits, ch.value / max(ch.visits, 1)))
        states = torch.stack([roots[k].x for k in everyone])
        return states, problem.score(states[:, None])[:, 0], TreeTrace(expanded)

    def _simulate(self, problem: Problem, runner: StepRunner, roots: dict[int, Node],
                  expanded: list[list[int]]) -> None:
        """S simulations from every root, in rounds of up to `parallel` distinct leaves per condition."""
        done = dict.fromkeys(roots, 0)
        while any(n < self.S for n in done.values()):
            paths = self._select(roots, {k: min(self.parallel, self.S - n) for k, n in done.items()}, runner.steps)
            values = self._expand(problem, runner, paths, expanded)
            for (k, path), value in zip(paths, values, strict=True):
                done[k] += 1
                for node in path:
                    node.visits += 1
                    node.value += value

    def _select(self, roots: dict[int, Node], wanted: dict[int, int], steps: int) -> list[tuple[int, list[Node]]]:
        """Up to wanted[k] root-to-leaf paths per condition k by UCT, each leaf at most once: after each path
        its nodes carry a virtual visit worth their mean value (an unvisited node's: its parent's), which
        lowers their exploration bonus so that the next path diverges; the virtual visits are taken back."""
        paths: list[tuple[int, list[Node]]] = []
        for k, root in roots.items():
            virtual: list[tuple[Node, float]] = []
            leaves: set[int] = set()
            for _ in range(wanted[k]):
                node, path = root, [root]
                while node.children and node.step < steps:
                    node = node.uct_child(self.c_uct)
                    path.append(node)
                if id(node) in leaves:
                    break
                leaves.add(id(node))
                paths.append((k, path))
                if len(leaves) < wanted[k]:
                    parent_mean = 0.0
                    for node in path:
                        mean = node.value / node.visits if node.visits else parent_mean
                        node.visits += 1
                        node.value += mean
                        virtual.append((node, mean))
                        parent_mean = mean
            for node, mean in virtual:
                node.visits -= 1
                node.value -= mean
        return paths

    def _expand(self, problem: Problem, runner: StepRunner, paths: list[tuple[int, list[Node]]],
                expanded: list[list[int]]) -> list[float]:
        """Expand the leaf of every path (all paths that expand one step in one batch), roll the best child out
        and return each path's value; a path whose leaf is x0 takes its reward (no NFE)."""
        values = [0.0] * len(paths)
        leaves = [path[-1] for _, path in paths]
        finished = [p for p, leaf in enumerate(leaves) if leaf.step >= runner.steps]
        if finished:
            done = torch.stack([leaves[p].x for p in finished])[:, None]
            scores = problem.score(done, [paths[p][0] for p in finished])[:, 0].tolist()
            for p, score in zip(finished, scores, strict=True):
                values[p] = score
                expanded[paths[p][0]].append(runner.steps)
        by_step: dict[int, list[int]] = defaultdict(list)
        for p, leaf in enumerate(leaves):
            if leaf.step < runner.steps:
                by_step[leaf.step].append(p)
        for j, group in sorted(by_step.items()):
            which = [paths[p][0] for p in group]
            x = torch.stack([leaves[p].x for p in group])[:, None].expand(-1, self.N, *problem.image_shape)
            proposal = problem.propose(x, j, runner.gens.randn(self.N, *problem.image_shape, which=which), which)
            priors = problem.score(proposal.x0_hat, which)
            children = problem.advance(proposal, which).x_next
            k_next = runner.next_searchable(j + 1)
            children = runner.run(children, j + 1, k_next, which)  # gamma = 0 steps only
            best = priors.argmax(dim=1)
            rollout = runner.run(children[torch.arange(len(group)), best][:, None], k_next, runner.steps, which)
            scores = problem.score(rollout, which)[:, 0]
            for row, p in enumerate(group):
                leaf = leaves[p]
                leaf.children = [Node(k_next, children[row, n], float(priors[row, n])) for n in range(self.N)]
                paths[p][1].append(leaf.children[int(best[row])])
                values[p] = float(scores[row])
                expanded[which[row]].append(j)
        return values
