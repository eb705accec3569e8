"""Best-of-N (Ma et al.'s random search) and naive sampling (its N = 1 case)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.sampling import EDMSchedule
from noisesearch.search.base import SearchAlgorithm, run_steps, select_best
from noisesearch.search.registry import register_algorithm
from noisesearch.types import Trace


@register_algorithm
@dataclass(frozen=True)
class BestOfN(SearchAlgorithm):
    """N independent trajectories per condition; keep the one with the best final reward."""

    name = "best_of_n"
    nfe_doc = "N·(2T − 1) for T sampler steps (×2 with classifier-free guidance)"
    N: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.N, int) or self.N < 1:
            raise NoiseSearchError(f"N must be an integer of at least 1, got {self.N}")

    def nfe_formula(self, schedule: EDMSchedule) -> int:
        return self.N * schedule.nfe_per_trajectory()

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        gens = problem.generators()
        shape = problem.image_shape
        x, _ = run_steps(problem, gens, problem.initial_state(gens.randn(self.N, *shape)), 0, problem.schedule.steps)
        states, rewards = select_best(x, problem.score(x))
        return states, rewards, None


@register_algorithm
@dataclass(frozen=True)
class Naive(BestOfN):
    """One stochastic EDM trajectory per condition, no search."""

    name = "naive"
    nfe_doc = "2T − 1 (35 for the default 18 steps; ×2 with classifier-free guidance)"
    N: int = field(default=1, init=False)
