"""Soft value-based decoding, SVDD-PM (Li et al., "Derivative-Free Guidance in Continuous and Discrete Diffusion
Models with Soft Value-Based Decoding", arXiv 2408.08252): at every step, M candidate next states, one kept by
the value estimate, here the reward of the candidate's x0 prediction.

| paper / authors' code (masa-ue/SVDD-image, sd_pipeline.py, `--variant PM`) | here |
| --- | --- |
| `duplicate_size` M next states x_{t−1} from the pre-trained transition | `candidates` (was `M`): churned states x̂_i |
| value v(x_{t−1}) = r(x0 prediction at x_{t−1}) (PM: posterior mean) | r(x0 prediction of the first call at x̂_i) |
| pick x_{t−1} ∝ exp(v/α); α = 0 argmax (the authors' code: argmax) | `alpha`: 0 argmax, > 0 a draw ∝ exp(r/α) |
| no selection at the last step | steps with gamma = 0 inject no noise and are not searched |

In the EDM sampler the noise enters before a step's first call, so a candidate next state is the churned
state x̂_i, and its x0 prediction is the call the chosen one's step reuses: a searched step costs M + c_i − 1
calls. With alpha = 0 SVDD is per-step best-of-M, which is ε-greedy with K = 1, ε = 1 and N = M (its one
iteration draws M fresh normals and keeps the best): SVDD runs that loop, so `svdd` (candidates = M, alpha = 0)
gives bit-identical images to `eps_greedy` (N = M, K = 1, eps = 1). A draw ∝ exp(r/α) uses one uniform of the
condition's generator per searched step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.rng import SampleGenerators
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, check_positive_int, inverse_cdf
from noisesearch.search.local import LocalSearch
from noisesearch.search.registry import register_algorithm
from noisesearch.search.step_schedule import SearchSchedule


@register_algorithm
@dataclass(frozen=True)
class SVDD(LocalSearch):
    """SVDD-PM: at every searchable step, M = `candidates` candidate noises from the condition's generator, each
    scored on the reward of its x0 prediction; the best is kept (alpha = 0) or one is drawn with probability ∝
    exp(reward / alpha). alpha = 0 is eps_greedy with N = M, K = 1, eps = 1."""

    name = "svdd"
    source = "SVDD-PM: Li et al. ([arXiv 2408.08252](https://arxiv.org/abs/2408.08252)), masa-ue/SVDD-image"
    family = "value_decoding"
    nfe_doc = f"Σ over steps: candidates + c_i − 1 at searchable steps (gamma > 0), c_i elsewhere, {CALLS_DOC}"
    renamed = {"M": "candidates"}
    candidates: int = 4
    alpha: float = 0.0
    lambda_: float = field(default=LocalSearch.lambda_, init=False)
    elitism: bool = field(default=False, init=False)
    score_with: str = field(default="x0", init=False)
    B: int = field(default=1, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(candidates=self.candidates)
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            raise NoiseSearchError(f"alpha must be a non-negative finite number, got {self.alpha}")

    def schedule_for(self, sampler: Sampler) -> SearchSchedule:
        return SearchSchedule.uniform(sampler, 1, 1.0, self.candidates)

    def survivors(self, pool: torch.Tensor, B: int, gens: SampleGenerators, which: Sequence[int]) -> torch.Tensor:
        """The argmax (alpha = 0), or one draw ∝ exp(score / alpha) (the incumbent's −inf has weight 0)."""
        if self.alpha == 0:
            return super().survivors(pool, B, gens, which)
        return inverse_cdf(torch.softmax(pool / self.alpha, dim=1), gens.rand(1, which=which))
