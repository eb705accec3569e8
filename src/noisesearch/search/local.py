"""Per-step local noise search: ε-greedy (the brief's Algorithm 1) and zero-order search (ε = 0)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import EDMSchedule
from noisesearch.search.base import SearchAlgorithm
from noisesearch.search.registry import register_algorithm
from noisesearch.search.tracing import TraceRecorder
from noisesearch.types import Proposal, Trace


def check_positive_int(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise NoiseSearchError(f"{name} must be an integer of at least 1, got {value}")


def local_draws(gens: SampleGenerators, pivot: torch.Tensor, n: int, lambda_: float) -> torch.Tensor:
    """n draws p + r·v per condition: v uniform on the unit sphere, r = u·sqrt(2d), u ~ U(0, lambda_)."""
    d = pivot[0].numel()
    direction = gens.randn(n, *pivot.shape[1:])
    direction = direction / direction.flatten(2).norm(dim=2)[:, :, None, None, None]
    radius = gens.rand(n) * lambda_ * math.sqrt(2 * d)
    return pivot[:, None] + radius[:, :, None, None, None] * direction


@register_algorithm
@dataclass(frozen=True)
class EpsGreedy(SearchAlgorithm):
    """ε-greedy noise search (brief, Algorithm 1): per searchable step, K iterations of N candidates,
    each a global N(0, I) draw with probability eps, else a local draw around the pivot.

    Candidates are scored on the x0 prediction of their first call (score_with="x0"), or after the full
    Heun step on the correction's x0 prediction (score_with="step", twice the calls). With elitism the
    incumbent changes only when a candidate strictly beats it; elitism=False is the plain algorithm."""

    name = "eps_greedy"
    nfe_doc = ("Σ over steps: N·K + 1 at searchable steps (gamma > 0), 2 elsewhere, 1 less at the last step; "
               "2·N·K at searchable steps with score_with='step'")
    N: int = 4
    K: int = 20
    lambda_: float = 0.15
    eps: float = 0.4
    elitism: bool = True
    score_with: str = "x0"

    def __post_init__(self) -> None:
        check_positive_int(N=self.N, K=self.K)
        if not 0 <= self.eps <= 1:
            raise NoiseSearchError(f"eps must lie in [0, 1], got {self.eps}")
        if not self.lambda_ > 0:
            raise NoiseSearchError(f"lambda_ must be positive, got {self.lambda_}")
        if self.score_with not in ("x0", "step"):
            raise NoiseSearchError(f"score_with must be 'x0' or 'step', got '{self.score_with}'")

    def nfe_formula(self, schedule: EDMSchedule) -> int:
        return schedule.nfe_per_step_search(self.N * self.K, full_step=self.score_with == "step")

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        gens = problem.generators()
        shape, c = problem.image_shape, problem.n
        rows = torch.arange(c)
        recorder = TraceRecorder()
        x = problem.initial_state(gens.randn(1, *shape))
        searchable = set(problem.schedule.searchable_steps())
        for i in range(problem.schedule.steps):
            if i not in searchable:
                x = problem.step(x, i, None).x_next
                continue
            pivot = gens.randn(*shape)
            best = torch.full((c,), -math.inf)
            kept = torch.empty(c, 2, *shape)  # the incumbent's (x_hat, x0_hat), or (x_next, x0_next) for "step"
            for k in range(1, self.K + 1):
                is_global = gens.rand(self.N) < self.eps
                fresh = gens.randn(self.N, *shape)
                candidates = torch.where(is_global[:, :, None, None, None], fresh,
                                         local_draws(gens, pivot, self.N, self.lambda_))
                proposal = problem.propose(x.expand(c, self.N, *shape), i, candidates)
                if self.score_with == "step":
                    out = problem.advance(proposal)
                    pair = torch.stack([out.x_next, out.x0_next], dim=2)
                else:
                    pair = torch.stack([proposal.x_hat, proposal.x0_hat], dim=2)
                scores = problem.score(pair[:, :, 1])
                win = scores.argmax(dim=1)
                win_score = scores[rows, win]
                changed = win_score > best if self.elitism else torch.ones(c, dtype=torch.bool)
                best = torch.where(changed, win_score, best)
                keep = changed[:, None, None, None]
                pivot = torch.where(keep, candidates[rows, win], pivot)
                kept = torch.where(keep[:, None], pair[rows, win], kept)
                recorder.record(rows, i, problem.sampler.sigmas[i].item(), k, win_score, best,
                                is_global[rows, win], changed)
            if self.score_with == "step":
                x = kept[:, None, 0]
            else:
                x = problem.advance(Proposal(i, kept[:, None, 0], kept[:, None, 1])).x_next
        return x[:, 0], problem.score(x)[:, 0], recorder.build()


@register_algorithm
@dataclass(frozen=True)
class ZeroOrder(EpsGreedy):
    """Zero-order search (the brief's baseline): ε-greedy with local draws only (eps = 0)."""

    name = "zero_order"
    eps: float = field(default=0.0, init=False)
