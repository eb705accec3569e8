"""Where a sampler's noise enters: EDM's stochastic churn (Karras et al. 2022, Algorithm 2)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from noisesearch.checks import check_finite, is_real, shown
from noisesearch.errors import NoiseSearchError


@dataclass(frozen=True)
class Churn:
    """At step i, raise sigma_i to sigma_hat_i = sigma_i·(1 + gamma_i) by adding
    sqrt(sigma_hat_i² − sigma_i²)·S_noise·noise, with gamma_i = min(S_churn / steps, sqrt(2) − 1) where
    S_min <= sigma_i <= S_max, else 0. Steps with gamma_i = 0 take no noise: they are not searchable."""

    S_churn: float = 40.0
    S_min: float = 0.05
    S_max: float = 50.0
    S_noise: float = 1.003

    def __post_init__(self) -> None:
        for name in ("S_churn", "S_min", "S_noise"):
            check_finite(getattr(self, name), name)
        if not (is_real(self.S_max) and self.S_max >= self.S_min):  # S_max = inf: churn at every level above S_min
            raise NoiseSearchError(f"S_max must be a number of at least S_min ({self.S_min}), got {shown(self.S_max)}")
        if self.S_churn < 0 or self.S_min < 0 or not self.S_noise > 0:
            raise NoiseSearchError(f"need S_churn >= 0, S_min >= 0 and S_noise > 0, got S_churn {self.S_churn}, "
                                   f"S_min {self.S_min} and S_noise {self.S_noise}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def gammas(self, sigmas: torch.Tensor) -> torch.Tensor:
        """gamma_i of each step for the step sigmas (steps,) of a schedule."""
        g = min(self.S_churn / len(sigmas), math.sqrt(2) - 1)
        inside = (sigmas >= self.S_min) & (sigmas <= self.S_max)
        return torch.where(inside, torch.full_like(sigmas, g), torch.zeros_like(sigmas))

    def inject(self, x: torch.Tensor, sigma: torch.Tensor, sigma_hat: torch.Tensor, noise: torch.Tensor
               ) -> torch.Tensor:
        """x at sigma raised to sigma_hat with the given standard normal noise."""
        return x + (sigma_hat ** 2 - sigma ** 2).sqrt() * self.S_noise * noise
