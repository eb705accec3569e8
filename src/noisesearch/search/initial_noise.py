"""Ma et al.'s zero-order search over the initial noise only."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from noisesearch import cost
from noisesearch.problem import Problem
from noisesearch.sampling import Sampler
from noisesearch.search.base import (
    CALLS_DOC,
    SearchAlgorithm,
    check_lambda,
    check_positive_int,
    fixed_step_noise,
    keep_improvements,
    run_with_step_noise,
)
from noisesearch.search.local import local_draws
from noisesearch.search.registry import register_algorithm
from noisesearch.types import Trace


@register_algorithm
@dataclass(frozen=True)
class ZeroOrderInitial(SearchAlgorithm):
    """Zero-order search over x_T: K rounds of N neighbours of the pivot, each sampled to the end with
    the condition's fixed per-step noises; the pivot moves to the best neighbour if it improves."""

    name = "zero_order_initial"
    source = ("zero-order search over the initial noise: Ma et al., *Inference-Time Scaling for Diffusion Models "
              "beyond Scaling Denoising Steps* ([arXiv 2501.09732](https://arxiv.org/abs/2501.09732))")
    family = "initial"
    scores_whole_trajectories = True
    anytime = "K"
    nfe_doc = f"K·N·Σ_i c_i, {CALLS_DOC}: K·N·(2T − 1) for T Heun steps"
    N: int = 4
    K: int = 5
    lambda_: float = 0.15

    def __post_init__(self) -> None:
        check_positive_int(N=self.N, K=self.K)
        check_lambda(self.lambda_)

    def nfe_formula(self, sampler: Sampler) -> int:
        return self.K * self.N * cost.trajectory_calls(sampler)

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        (best_images, best), = deque(self.rounds(problem), maxlen=1)
        return best_images, best, None

    def rounds(self, problem: Problem) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pivot's best final states and rewards after each of the K rounds (round k's draws do not depend
        on K, so the first k rounds are the run with K = k)."""
        gens = problem.generators()
        shape, c = problem.image_shape, problem.n
        pivot = gens.randn(*shape)
        step_noise = fixed_step_noise(problem, gens)
        best_images = torch.zeros(c, *shape)
        best = torch.full((c,), -math.inf)
        for _ in range(self.K):
            candidates = local_draws(gens, pivot[:, None].expand(c, self.N, *shape), self.lambda_)
            final, x0 = run_with_step_noise(problem, candidates, step_noise)
            best, (best_images, pivot) = keep_improvements(best, problem.score(final, x0=x0), (best_images, pivot),
                                                           (final, candidates))
            yield best_images, best
