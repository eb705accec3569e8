"""Best-of-N (Ma et al.'s random search) and naive sampling (its N = 1 case)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from noisesearch import cost
from noisesearch.problem import Problem
from noisesearch.rng import CandidateGenerators
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, SearchAlgorithm, check_positive_int, run_trajectories, select_best
from noisesearch.search.registry import register_algorithm
from noisesearch.types import Trace


@register_algorithm
@dataclass(frozen=True)
class BestOfN(SearchAlgorithm):
    """N independent trajectories per condition; keep the one with the best final reward.

    nested=True draws each candidate's noise (initial and step noise) from its own stream (rng.CandidateGenerators),
    so the first n candidates of best-of-N are exactly best-of-n's: Ma et al.'s random search at every n ≤ N
    from the N trajectories of one run (bench derives those cells from one pool). The default draws all of a
    condition's candidates from its one generator."""

    name = "best_of_n"
    source = ("random search: Ma et al., *Inference-Time Scaling for Diffusion Models beyond Scaling Denoising "
              "Steps* ([arXiv 2501.09732](https://arxiv.org/abs/2501.09732))")
    family = "initial"
    scores_whole_trajectories = True
    nfe_doc = f"N·Σ_i c_i, {CALLS_DOC}: N·(2T − 1) for T Heun steps, N·T for Euler"
    N: int = 4
    nested: bool = False

    def __post_init__(self) -> None:
        check_positive_int(N=self.N)

    def nfe_formula(self, sampler: Sampler) -> int:
        return self.N * cost.trajectory_calls(sampler)

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        gens = CandidateGenerators(problem.seeds, self.N) if self.nested else problem.generators()
        shape = problem.image_shape
        x, x0 = run_trajectories(problem, gens, problem.initial_state(gens.randn(self.N, *shape)))
        states, rewards = select_best(x, problem.score(x, x0=x0))
        return states, rewards, None


@register_algorithm
@dataclass(frozen=True)
class Naive(BestOfN):
    """One stochastic trajectory of the sampler per condition, no search."""

    name = "naive"
    source = ("the sampler alone (EDM's stochastic sampler, Karras et al., arXiv 2206.00364): the baseline every "
              "search is measured against")
    family = "baseline"
    nfe_doc = "Σ_i c_i: 2T − 1 for T Heun steps (35 at the default 18), T for Euler (18)"
    N: int = field(default=1, init=False)
    nested: bool = field(default=False, init=False)
