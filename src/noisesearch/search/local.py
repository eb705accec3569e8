"""Per-step local noise search: ε-greedy (Algorithm 1 of Ramesh and Mardani, "Test-Time Scaling of Diffusion
Models via Noise Trajectory Search", arXiv 2506.03164), zero-order search (ε = 0) and the paper's σ window
(its Appendix J.1), driven by a SearchSchedule (K_t, ε_t, N_t per searchable step)."""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import torch

from noisesearch import cost
from noisesearch.checks import shown
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, SearchAlgorithm, check_eps, check_lambda, check_positive_int, select_best
from noisesearch.search.registry import register_algorithm
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.search.tracing import TraceRecorder
from noisesearch.types import Proposal, SearchResult, Trace


def local_draws(gens: SampleGenerators, pivots: torch.Tensor, lambda_: float,
                which: Sequence[int] | None = None) -> torch.Tensor:
    """One draw p + r·v around each pivot p of pivots (C, n, ...): v uniform on the unit sphere,
    r = u·sqrt(2d), u ~ U(0, lambda_)."""
    n, d = pivots.shape[1], pivots[0, 0].numel()
    direction = gens.randn(n, *pivots.shape[2:], which=which)
    direction = direction / direction.flatten(2).norm(dim=2)[:, :, None, None, None]
    radius = gens.rand(n, which=which) * lambda_ * math.sqrt(2 * d)
    return pivots + radius[:, :, None, None, None] * direction


def load_schedule(schedule: SearchSchedule | str | os.PathLike | None) -> SearchSchedule | None:
    """A SearchSchedule given as itself or as the path of its JSON file (a str or a Path); anything else is a
    one-line error."""
    if isinstance(schedule, (str, os.PathLike)):
        return SearchSchedule.load(schedule)
    if schedule is not None and not isinstance(schedule, SearchSchedule):
        raise NoiseSearchError(f"search_schedule must be a SearchSchedule or the path of its JSON file, got "
                               f"{shown(schedule)}")
    return schedule


@dataclass(frozen=True)
class LocalSearch(SearchAlgorithm):
    """The shared loop of per-step local searches. At each searchable step t, for up to K_t iterations,
    N_t candidates are drawn — each a global N(0, I) draw with probability ε_t, else a local draw around
    the pivot — and scored; the best becomes the pivot. K_t = 0 takes the plain sampler step.

    With B > 1 (a beam of incumbents) B trajectories are searched together: every incumbent proposes
    N_t candidates from its own parent state, the B best of incumbents and candidates continue (a
    trajectory may take over another's place), and the best final image is returned. B = 1 is the
    paper's Algorithm 1; K_t = 1 with ε_t = 1 is beam search (N_t, B). Every call counts B times.

    Candidates are scored on the x0 prediction of their first call (score_with="x0"), or after the full
    solver step on its latest x0 prediction (score_with="step": twice the calls with Heun, the same with
    Euler). With elitism the incumbent changes only when a candidate strictly beats it; elitism=False
    is the plain algorithm. Subclasses choose the search schedule (`schedule_for`) and, optionally,
    per-condition iteration limits (`_iterations`) and a patience after which a step stops when its best
    score has not improved."""

    searches_step_noise = True
    lambda_: float = 0.15
    elitism: bool = True
    score_with: str = "x0"
    B: int = 1

    def __post_init__(self) -> None:
        check_positive_int(B=self.B)
        check_lambda(self.lambda_)
        if self.score_with not in ("x0", "step"):
            raise NoiseSearchError(f"score_with must be 'x0' or 'step', got '{self.score_with}'")

    def schedule_for(self, sampler: Sampler) -> SearchSchedule:
        """K_t, ε_t and N_t at every searchable step of `sampler`."""
        raise NotImplementedError

    @property
    def stop_patience(self) -> int | None:
        return None

    def _iterations(self, sampler: Sampler, schedule: SearchSchedule, t: int,
                    extra_calls: torch.Tensor) -> torch.Tensor:
        """Iteration limit of each condition at searchable step t, given the calls each has spent so far
        beyond a plain trajectory."""
        return torch.full_like(extra_calls, schedule.K[t])

    def nfe_formula(self, sampler: Sampler) -> int | None:
        schedule = self.schedule_for(sampler)
        schedule.check_matches(sampler)
        return self.B * cost.schedule_calls(sampler, schedule, full_step=self.score_with == "step")

    def expected_calls(self, sampler: Sampler, result: SearchResult) -> torch.Tensor:
        """The documented per-step cost applied to the iterations the trace shows at each step."""
        return self.B * iterations_to_calls(sampler, self.schedule_for(sampler), result.trace, len(result.nfe),
                                             self.score_with == "step")

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        sampler = problem.sampler
        schedule = self.schedule_for(sampler)
        schedule.check_matches(sampler)
        position = {i: t for t, i in enumerate(schedule.steps)}
        gens = problem.generators()
        recorder = TraceRecorder(problem.trace_detail)
        x = problem.initial_state(gens.randn(self.B, *problem.image_shape))
        extra = torch.zeros(problem.n, dtype=torch.long)
        full_step = self.score_with == "step"
        for i in range(sampler.steps):
            if i not in position:
                x = problem.step(x, i, None).x_next
                continue
            t = position[i]
            limit = self._iterations(sampler, schedule, t, extra)
            x, done = self._search_step(problem, gens, x, i, schedule.N[t], schedule.eps[t], limit, recorder)
            plain = cost.search_step_calls(sampler, i, 0)
            extra += torch.tensor([self.B * (cost.search_step_calls(sampler, i, schedule.N[t] * n, full_step) - plain)
                                   for n in done.tolist()])
        return *select_best(x, problem.score(x)), recorder.build()

    def _search_step(self, problem: Problem, gens: SampleGenerators, x: torch.Tensor, i: int, N: int, eps: float,
                     limit: torch.Tensor, recorder: TraceRecorder) -> tuple[torch.Tensor, torch.Tensor]:
        """Step i for every condition: plain where its limit is 0, searched elsewhere; returns the next
        state and the iterations run per condition."""
        x_next = torch.empty_like(x)
        done = torch.zeros_like(limit)
        plain = (limit == 0).nonzero().flatten().tolist()
        if plain:
            noise = gens.randn(x.shape[1], *problem.image_shape, which=plain)
            x_next[plain] = problem.step(x[plain], i, noise, plain).x_next
        searched = (limit > 0).nonzero().flatten()
        if len(searched):
            x_next[searched], done[searched] = self.climb(problem, gens, x[searched], i, N, eps, searched,
                                                          limit[searched], recorder)
        return x_next, done

    def survivors(self, pool: torch.Tensor, B: int, gens: SampleGenerators, which: Sequence[int]) -> torch.Tensor:
        """Indices (S, B) into the pool of scores (S, B + B·N: incumbents, then candidates) of the B that
        continue, best first (best[:, 0] is each condition's leader): the B best; ties go to incumbents, then to
        earlier candidates."""
        return pool.sort(dim=1, descending=True, stable=True).indices[:, :B]

    def climb(self, problem: Problem, gens: SampleGenerators, x: torch.Tensor, i: int, N: int, eps: float,
              conditions: torch.Tensor, limit: torch.Tensor, recorder: TraceRecorder
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Up to limit[c] iterations of ε-greedy (N candidates, global-draw probability eps) at step i for
        the given conditions (indices into the Problem), from the states x (S, B, ...) of their B
        incumbents; draws come from `gens`, iterations are recorded in `recorder`. Returns the next
        states (S, B, ...) and the iterations run per condition."""
        (_, kept, done), = deque(self.climb_iterations(problem, gens, x, i, N, eps, conditions, limit, recorder),
                                 maxlen=1)
        if recorder.detail:
            recorder.record_x0(conditions, i, problem.to_images(kept[:, :1, 1])[:, 0])
        return self.finish_climb(problem, kept, i, conditions), done

    def finish_climb(self, problem: Problem, kept: torch.Tensor, i: int, conditions: torch.Tensor) -> torch.Tensor:
        """The next states (S, B, ...) of a climb from what `climb_iterations` kept."""
        if self.score_with == "step":
            return kept[:, :, 0]
        return problem.advance(Proposal(i, kept[:, :, 0], kept[:, :, 1]), conditions.tolist()).x_next

    def climb_iterations(self, problem: Problem, gens: SampleGenerators, x: torch.Tensor, i: int, N: int,
                         eps: float, conditions: torch.Tensor, limit: torch.Tensor, recorder: TraceRecorder
                         ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """The iterations of `climb`, yielding after each iteration k its number, what each incumbent keeps (S, B,
        2, ...: (x_hat, x0_hat), or (x_next, x0_next) with score_with="step"; overwritten by the next iteration)
        and the iterations run per condition. The climb of limit k is the first k iterations of any longer one
        (the same draws), so `finish_climb` on the k-th yield gives the states `climb` returns with limit k."""
        shape, s, B = problem.image_shape, len(conditions), x.shape[1]
        sigma = problem.sampler.sigmas[i].item()
        parent = x.clone()
        pivot = gens.randn(B, *shape, which=conditions.tolist())
        best = torch.full((s, B), -math.inf)
        record = torch.full((s,), -math.inf)
        stale = torch.zeros(s, dtype=torch.long)
        done = torch.zeros(s, dtype=torch.long)
        kept = torch.empty(s, B, 2, *shape)  # each incumbent's (x_hat, x0_hat), or (x_next, x0_next) for "step"
        patience = self.stop_patience
        for k in range(1, int(limit.max()) + 1):
            live = (limit >= k) & (stale < patience if patience else True)
            if not live.any():
                break
            a = live.nonzero().flatten()
            which = conditions[a].tolist()
            rows = torch.arange(len(a))
            is_global = gens.rand(B * N, which=which) < eps
            fresh = gens.randn(B * N, *shape, which=which)
            candidates = torch.where(is_global[:, :, None, None, None], fresh,
                                     local_draws(gens, pivot[a].repeat_interleave(N, dim=1), self.lambda_, which))
            parents = parent[a].repeat_interleave(N, dim=1)  # candidate j belongs to incumbent j // N
            proposal = problem.propose(parents, i, candidates, which)
            if self.score_with == "step":
                out = problem.advance(proposal, which)
                pair = torch.stack([out.x_next, out.x0_next], dim=2)
            else:
                pair = torch.stack([proposal.x_hat, proposal.x0_hat], dim=2)
            scores = problem.score(pair[:, :, 1], which)
            win = scores.argmax(dim=1)
            win_score = scores[rows, win]
            changed = win_score > best[a, 0] if self.elitism else torch.ones(len(a), dtype=torch.bool)
            stale[a] = torch.where(win_score > record[a], 0, stale[a] + 1)
            record[a] = torch.maximum(record[a], win_score)
            incumbents = best[a] if self.elitism else torch.full_like(best[a], -math.inf)
            pool = torch.cat([incumbents, scores], dim=1)  # ties go to incumbents, then to earlier candidates
            keep = self.survivors(pool, B, gens, which)
            pick = rows[:, None], keep
            best[a] = pool[pick]
            pivot[a] = torch.cat([pivot[a], candidates], dim=1)[pick]
            parent[a] = torch.cat([parent[a], parents], dim=1)[pick]
            kept[a] = torch.cat([kept[a], pair], dim=1)[pick]
            done[a] += 1
            recorder.record(conditions[a], i, sigma, k, win_score, best[a, 0], is_global[rows, win], changed,
                            scores.mean(dim=1), scores=scores, is_global=is_global, nfe=problem.nfe[conditions[a]])
            yield k, kept, done


def iterations_to_calls(sampler: Sampler, schedule: SearchSchedule, trace: Trace, conditions: int,
                        full_step: bool) -> torch.Tensor:
    """Denoiser calls per condition implied by the iterations a trace records at each searchable step."""
    calls = torch.zeros(conditions, dtype=torch.long)
    for c in range(conditions):
        proposals = {i: schedule.N[t] * int(((trace.condition == c) & (trace.step == i)).sum())
                     for t, i in enumerate(schedule.steps)}
        calls[c] = cost.searched_calls(sampler, proposals, full_step)
    return calls


@register_algorithm
@dataclass(frozen=True)
class EpsGreedy(LocalSearch):
    """ε-greedy noise search (the paper's Algorithm 1): per searchable step, K iterations of N candidates,
    each a global N(0, I) draw with probability eps, else a local draw around the pivot. Given a
    `search_schedule` (a SearchSchedule or the path of its JSON), its K_t, ε_t and N_t replace K, eps and N."""

    name = "eps_greedy"
    source = ("Algorithm 1 of Ramesh and Mardani, *Test-Time Scaling of Diffusion Models via Noise Trajectory "
              "Search* ([arXiv 2506.03164](https://arxiv.org/abs/2506.03164))")
    family = "reference"
    nfe_doc = (f"Σ over steps: N·K + c_i − 1 at searchable steps (gamma > 0), c_i elsewhere, {CALLS_DOC}; "
               "N·K·c_i at searchable steps with score_with='step'; all ×B")
    N: int = 4
    K: int = 20
    eps: float = 0.4
    search_schedule: SearchSchedule | str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(N=self.N, K=self.K)
        check_eps(self.eps)
        object.__setattr__(self, "search_schedule", load_schedule(self.search_schedule))

    def params(self) -> dict:
        params = super().params()
        if params.get("search_schedule") is not None:
            params["search_schedule"] = params["search_schedule"].to_dict()
        return params

    def schedule_for(self, sampler: Sampler) -> SearchSchedule:
        return self.search_schedule or SearchSchedule.uniform(sampler, self.K, self.eps, self.N)


@register_algorithm
@dataclass(frozen=True)
class ZeroOrder(EpsGreedy):
    """Zero-order search (the paper's baseline, Ma et al.'s zero-order search at every step): ε-greedy with
    local draws only (eps = 0)."""

    name = "zero_order"
    source = ("the baseline of Ramesh and Mardani, *Test-Time Scaling of Diffusion Models via Noise Trajectory "
              "Search* ([arXiv 2506.03164](https://arxiv.org/abs/2506.03164)); zero-order search of Ma et al., "
              "*Inference-Time Scaling for Diffusion Models beyond Scaling Denoising Steps* ([arXiv "
              "2501.09732](https://arxiv.org/abs/2501.09732))")
    family = "local"
    eps: float = field(default=0.0, init=False)

    def schedule_for(self, sampler: Sampler) -> SearchSchedule:
        schedule = super().schedule_for(sampler)
        return replace(schedule, eps=(0.0,) * len(schedule.steps))


@register_algorithm
@dataclass(frozen=True)
class EpsGreedyWindow(LocalSearch):
    """ε-greedy with K_in iterations at the searchable steps with sigma_lo <= σ_i <= sigma_hi and K_out
    elsewhere (the paper's Appendix J.1 proof of concept: K = 20 inside 0.01 <= σ <= 1, K = 1 outside)."""

    name = "eps_greedy_window"
    source = ("Appendix J.1 of Ramesh and Mardani, *Test-Time Scaling of Diffusion Models via Noise Trajectory "
              "Search* ([arXiv 2506.03164](https://arxiv.org/abs/2506.03164))")
    family = "window"
    nfe_doc = (f"Σ over steps: N·K_t + c_i − 1 at searchable steps (K_t = K_in inside the window, K_out outside), "
               f"c_i elsewhere, {CALLS_DOC}")
    N: int = 4
    eps: float = 0.4
    sigma_lo: float = 0.01
    sigma_hi: float = 1.0
    K_in: int = 20
    K_out: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(N=self.N, K_in=self.K_in)
        if not isinstance(self.K_out, int) or self.K_out < 0:
            raise NoiseSearchError(f"K_out must be an integer >= 0, got {self.K_out}")
        if not 0 <= self.sigma_lo <= self.sigma_hi:
            raise NoiseSearchError(f"need 0 <= sigma_lo <= sigma_hi, got {self.sigma_lo} and {self.sigma_hi}")
        check_eps(self.eps)

    def schedule_for(self, sampler: Sampler) -> SearchSchedule:
        sigmas = sampler.sigmas
        K = [self.K_in if self.sigma_lo <= float(sigmas[i]) <= self.sigma_hi else self.K_out
             for i in sampler.searchable_steps()]
        return SearchSchedule.uniform(sampler, K, self.eps, self.N)
