"""Monte Carlo tree search over per-step noises, one simulation's back-up before the next selection."""

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


def group_by_step(leaves: dict[int, Node]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for c, node in leaves.items():
        groups[node.step].append(c)
    return dict(sorted(groups.items()))


@register_algorithm
@dataclass(frozen=True)
class MCTS(SearchAlgorithm):
    """(N, S) MCTS: at every searchable step, S simulations of select (UCT) → expand (N candidate noises,
    each stepped) → roll out the child with the best x0 prediction to x0 with fresh noise → back up its
    reward, each simulation's back-up before the next selection; then commit the most-visited child
    (keeping its subtree) and descend. Conditions run side by side, batched by the step they expand."""

    name = "mcts"
    nfe_doc = ("Σ c_i over the steps before the first searchable one, plus per simulation that expands step j: "
               "N·(c_j + g_j) + r_j, where g_j is Σ c_i over the gamma = 0 steps up to the next searchable step k "
               f"and r_j Σ c_i from k on; a simulation that reaches x0 costs nothing; {CALLS_DOC}")
    searches_step_noise = True
    N: int = 4
    S: int = 8
    c_uct: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int(N=self.N, S=self.S)
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
            for _ in range(self.S):
                self._simulate(problem, runner, roots, expanded)
            for k in everyone:
                root = roots[k]
                roots[k] = max(root.children, key=lambda ch: (ch.visits, ch.value / max(ch.visits, 1)))
        states = torch.stack([roots[k].x for k in everyone])
        return states, problem.score(states[:, None])[:, 0], TreeTrace(expanded)

    def _simulate(self, problem: Problem, runner: StepRunner, roots: dict[int, Node],
                  expanded: list[list[int]]) -> None:
        paths = {}
        for k, root in roots.items():
            node, path = root, [root]
            while node.children and node.step < runner.steps:
                node = node.uct_child(self.c_uct)
                path.append(node)
            paths[k] = path
        leaves = {k: path[-1] for k, path in paths.items()}
        values: dict[int, float] = {}
        finished = [k for k, leaf in leaves.items() if leaf.step >= runner.steps]
        if finished:
            done = torch.stack([leaves[k].x for k in finished])[:, None]
            values.update(zip(finished, problem.score(done, finished)[:, 0].tolist(), strict=True))
            for k in finished:
                expanded[k].append(runner.steps)
        open_leaves = {k: leaf for k, leaf in leaves.items() if leaf.step < runner.steps}
        for j, group in group_by_step(open_leaves).items():
            x = torch.stack([open_leaves[k].x for k in group])[:, None].expand(-1, self.N, *problem.image_shape)
            proposal = problem.propose(x, j, runner.gens.randn(self.N, *problem.image_shape, which=group), group)
            priors = problem.score(proposal.x0_hat, group)
            children = problem.advance(proposal, group).x_next
            k_next = runner.next_searchable(j + 1)
            children = runner.run(children, j + 1, k_next, group)  # gamma = 0 steps only
            best = priors.argmax(dim=1)
            rollout = runner.run(children[torch.arange(len(group)), best][:, None], k_next, runner.steps, group)
            scores = problem.score(rollout, group)[:, 0]
            for row, k in enumerate(group):
                leaf = open_leaves[k]
                leaf.children = [Node(k_next, children[row, n], float(priors[row, n])) for n in range(self.N)]
                chosen = leaf.children[int(best[row])]
                paths[k].append(chosen)
                values[k] = float(scores[row])
                expanded[k].append(j)
        for k, path in paths.items():
            for node in path:
                node.visits += 1
                node.value += values[k]
