"""Ma et al.'s search over paths: re-noise promising partial trajectories and denoise them again."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from noisesearch import cost
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, SearchAlgorithm, check_positive_int, run_steps, select_best
from noisesearch.search.registry import register_algorithm
from noisesearch.types import Trace


@register_algorithm
@dataclass(frozen=True)
class Paths(SearchAlgorithm):
    """Search over paths (Ma et al.): N paths are sampled down to the first step with sigma ≤ sigma_start;
    then, until sigma reaches 0, every path gets M copies noised back up delta_f schedule steps and
    denoised down delta_b steps (fresh noise), and the N copies whose x0 predictions score best
    survive. delta_f and delta_b count steps of the sampler's sigma schedule; delta_b > delta_f."""

    name = "paths"
    source = ("search over paths: Ma et al., *Inference-Time Scaling for Diffusion Models beyond Scaling Denoising "
              "Steps* ([arXiv 2501.09732](https://arxiv.org/abs/2501.09732))")
    family = "paths"
    nfe_doc = (f"N·Σ c_i over the steps before sigma_start + Σ over rounds N·M·Σ c_i over the round's delta_b "
               f"steps, {CALLS_DOC}")
    N: int = 4
    M: int = 2
    sigma_start: float = 10.0
    delta_f: int = 2
    delta_b: int = 4

    def __post_init__(self) -> None:
        check_positive_int(N=self.N, M=self.M, delta_f=self.delta_f, delta_b=self.delta_b)
        if self.delta_b <= self.delta_f:
            raise NoiseSearchError(f"delta_b ({self.delta_b}) must exceed delta_f ({self.delta_f}) to make progress")
        if not self.sigma_start > 0:
            raise NoiseSearchError(f"sigma_start must be positive, got {self.sigma_start}")

    def rounds(self, sampler: Sampler) -> tuple[int, list[tuple[int, int]]]:
        """The step where search starts and each round's (noised-up step, step reached)."""
        sigmas = sampler.sigmas[:-1].tolist()
        start = next((j for j, s in enumerate(sigmas) if s <= self.sigma_start), sampler.steps)
        start = max(start, self.delta_f)
        rounds, j = [], start
        while j < sampler.steps:
            up = j - self.delta_f
            rounds.append((up, min(up + self.delta_b, sampler.steps)))
            j = rounds[-1][1]
        return start, rounds

    def nfe_formula(self, sampler: Sampler) -> int:
        start, rounds = self.rounds(sampler)
        return self.N * cost.steps_calls(sampler, 0, start) + sum(self.N * self.M * cost.steps_calls(sampler, a, b)
                                                                   for a, b in rounds)

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        gens = problem.generators()
        shape, c = problem.image_shape, problem.n
        rows = torch.arange(c)[:, None]
        sigmas = problem.sampler.sigmas
        start, rounds = self.rounds(problem.sampler)
        x, _ = run_steps(problem, gens, problem.initial_state(gens.randn(self.N, *shape)), 0, start)
        j = start
        for up, reached in rounds:
            copies = x.repeat_interleave(self.M, dim=1)
            lift = (sigmas[up] ** 2 - sigmas[j] ** 2).sqrt()
            copies = copies + lift * gens.randn(self.N * self.M, *shape)
            copies, x0_hat = run_steps(problem, gens, copies, up, reached)
            keep = problem.score(x0_hat).topk(self.N, dim=1).indices
            x, j = copies[rows, keep], reached
        best, rewards = select_best(x, problem.score(x))
        return best, rewards, None
