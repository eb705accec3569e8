"""Feynman–Kac steering (Singhal et al., "A General Framework for Inference-time Scaling and Steering of Diffusion
Models", arXiv 2501.06848): `particles` particles per condition, resampled by potentials of the reward of their x0
predictions, the best final particle returned.

| paper / authors' `FKD` (text_to_image/fkd_diffusers/fkd_class.py) | here |
| --- | --- |
| `num_particles` k | `particles` (was `K`) |
| `potential_type` max / add / diff | `potential` "max" / "add" / "difference" |
| `lmbda` λ | `inverse_temperature` (was `lambda_`): weights exp(λ·G), larger λ resamples greedier |
| `resample_frequency`, `resampling_t_start`/`_end` | `resample_every` R: after every R-th searchable step |
| `adaptive_resampling` (ESS < 0.5·k) | `ess_threshold` t: resample only where ESS < t·k (None: always) |
| `torch.multinomial(w, k)` | `resampling` "multinomial", or "systematic" |
| intermediate reward r(x0 prediction at x_t) | r(the step's first x0 prediction, at sigma_hat_i) |
| final output: the highest-reward particle | the same |

As in fkd_class.py, a particle carries the running value of its potential (`population_rs`): the running max
for "max", the running sum for "add", the last reward for "difference"; the weights at a resampling point are
exp(λ·max(r, r_prev)), exp(λ·(r + r_prev)) or exp(λ·(r − r_prev)), recomputed at every point (not
accumulated over points without resampling, as there). Deviations: the running value starts at −inf for "max"
(the authors' reward_min_value 0, the same for non-negative rewards); weights are normalised as a softmax of
λ·value (the same as their clamped exponentials wherever those do not overflow); their last resampling at the
terminal step (weights divided by the product of earlier potentials) is left out, since the best final particle
is returned and resampling first could only lose it; resampling draws come from each condition's generator (one
set per resampling point, drawn whether or not ESS calls for it), so results are reproducible and independent of
the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from noisesearch import cost
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, SearchAlgorithm, check_positive_int, inverse_cdf, select_best
from noisesearch.search.registry import register_algorithm
from noisesearch.types import Trace

POTENTIALS = ("max", "add", "difference")
RESAMPLING = ("multinomial", "systematic")


def resampling_uniforms(gens: SampleGenerators, particles: int, method: str) -> torch.Tensor:
    """The uniforms of one resampling of k particles per condition: k i.i.d. (multinomial) or one stratified
    offset (systematic: (u + j) / k)."""
    if method == "multinomial":
        return gens.rand(particles)
    return (gens.rand(1) + torch.arange(particles)) / particles


@register_algorithm
@dataclass(frozen=True)
class SMC(SearchAlgorithm):
    """Feynman–Kac steering: k = `particles` particles per condition run the sampler side by side; after every
    `resample_every`-th searchable step, each particle gets the potential of the reward r of its x0 prediction
    (`potential`: "max" exp(λ·max(r, r_prev)), "add" exp(λ·(r + r_prev)), "difference" exp(λ·(r − r_prev)),
    λ = `inverse_temperature`), and the particles are resampled in proportion to it ("multinomial" or "systematic"),
    always or, given `ess_threshold` t, only where the effective sample size falls below t·k. The best final
    particle is returned."""

    name = "smc"
    source = ("Feynman–Kac steering: Singhal et al. ([arXiv 2501.06848](https://arxiv.org/abs/2501.06848)), "
              "zacharyhorvitz/Fk-Diffusion-Steering")
    family = "particles"
    nfe_doc = f"particles·Σ_i c_i, {CALLS_DOC} (rewards and resampling cost no NFE)"
    renamed = {"K": "particles", "lambda_": "inverse_temperature"}
    particles: int = 4
    potential: str = "max"
    inverse_temperature: float = 10.0
    resample_every: int = 2
    ess_threshold: float | None = None
    resampling: str = "multinomial"

    def __post_init__(self) -> None:
        check_positive_int(particles=self.particles, resample_every=self.resample_every)
        if self.potential not in POTENTIALS:
            raise NoiseSearchError(f"potential must be one of {', '.join(POTENTIALS)}, got '{self.potential}'")
        if self.resampling not in RESAMPLING:
            raise NoiseSearchError(f"resampling must be one of {', '.join(RESAMPLING)}, got '{self.resampling}'")
        if not (math.isfinite(self.inverse_temperature) and self.inverse_temperature >= 0):
            raise NoiseSearchError(f"inverse_temperature must be a non-negative finite number, got "
                                   f"{self.inverse_temperature}")
        if self.ess_threshold is not None and not 0 < self.ess_threshold <= 1:
            raise NoiseSearchError(f"ess_threshold must lie in (0, 1], or be left out, got {self.ess_threshold}")

    def nfe_formula(self, sampler: Sampler) -> int:
        return self.particles * cost.trajectory_calls(sampler)

    def resampling_steps(self, sampler: Sampler) -> list[int]:
        """The steps after which the particles are resampled: every R-th searchable step, the last step excepted."""
        searchable = sampler.searchable_steps()
        return [i for i in searchable[self.resample_every - 1::self.resample_every] if i < sampler.steps - 1]

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace | None]:
        gens = problem.generators()
        sampler, k = problem.sampler, self.particles
        rows = torch.arange(problem.n)[:, None]
        x = problem.initial_state(gens.randn(k, *problem.image_shape))
        searchable, points = set(sampler.searchable_steps()), set(self.resampling_steps(sampler))
        value = torch.full((problem.n, k), -math.inf if self.potential == "max" else 0.0)
        for i in range(sampler.steps):
            out = problem.step(x, i, gens.randn(k, *problem.image_shape) if i in searchable else None)
            x = out.x_next
            if i not in points:
                continue
            reward = problem.score(out.x0_hat)
            value, log_w = self.potentials(reward, value)
            weights = torch.softmax(log_w, dim=1)
            u = resampling_uniforms(gens, k, self.resampling)
            ancestors = inverse_cdf(weights, u)
            if self.ess_threshold is not None:
                ess = 1 / weights.pow(2).sum(dim=1)
                keep = ess >= self.ess_threshold * k
                ancestors = torch.where(keep[:, None], torch.arange(k).expand_as(ancestors), ancestors)
            x, value = x[rows, ancestors], value[rows, ancestors]
        states, rewards = select_best(x, problem.score(x))
        return states, rewards, None

    def potentials(self, reward: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The particles' new running values and log-weights λ·G from the rewards (C, k) of their x0 predictions."""
        if self.potential == "max":
            new = torch.maximum(reward, value)
            return new, self.inverse_temperature * new
        if self.potential == "add":
            new = reward + value
            return new, self.inverse_temperature * new
        return reward, self.inverse_temperature * (reward - value)
