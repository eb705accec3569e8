"""The EDM noise schedule (Karras et al. 2022): sigma levels and stochastic churn per step."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from noisesearch.errors import NoiseSearchError


@dataclass(frozen=True)
class EDMSchedule:
    """Defaults of the reference EDM setting; `steps` sampler steps of Heun with churn."""

    steps: int = 18
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    S_churn: float = 40.0
    S_min: float = 0.05
    S_max: float = 50.0
    S_noise: float = 1.003

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise NoiseSearchError(f"steps must be at least 1, got {self.steps}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise NoiseSearchError("need 0 < sigma_min < sigma_max")

    def to_dict(self) -> dict:
        return asdict(self)

    def sigmas(self) -> torch.Tensor:
        """sigma_0 > ... > sigma_{steps-1} then a final 0: shape (steps + 1,), float32."""
        i = torch.arange(self.steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        denom = max(self.steps - 1, 1)
        t = (hi + i / denom * (lo - hi)) ** self.rho
        return torch.cat([t, torch.zeros(1, dtype=torch.float64)]).float()

    def gammas(self) -> torch.Tensor:
        """gamma_i = min(S_churn / steps, sqrt(2) - 1) where S_min <= sigma_i <= S_max, else 0."""
        sig = self.sigmas()[:-1]
        g = min(self.S_churn / self.steps, math.sqrt(2) - 1)
        inside = (sig >= self.S_min) & (sig <= self.S_max)
        return torch.where(inside, torch.full_like(sig, g), torch.zeros_like(sig))

    def sigma_hats(self) -> torch.Tensor:
        """sigma_hat_i = sigma_i·(1 + gamma_i): the level the denoiser sees at step i."""
        return self.sigmas()[:-1] * (1 + self.gammas())

    def searchable_steps(self) -> list[int]:
        """Steps whose injected noise has an effect (gamma_i > 0)."""
        return [i for i, g in enumerate(self.gammas().tolist()) if g > 0]

    def step_calls(self) -> list[int]:
        """Denoiser calls of each step run once: 2 (Heun), 1 at the last step."""
        return [2 if i < self.steps - 1 else 1 for i in range(self.steps)]

    def search_step_calls(self, i: int, proposals: int, full_step: bool = False) -> int:
        """Calls of step i when `proposals` candidate noises are scored there (0: the plain step).

        Scored on their first call's x0 prediction (1 call each), the chosen one is then stepped reusing
        that call: proposals + 1 (Heun). Scored after the full step (full_step), each costs 1 + 1 (Heun)
        and the chosen state is kept: 2·proposals. A plain step costs 2; the last step has no Heun
        correction."""
        calls = self.step_calls()[i]
        if proposals == 0:
            return calls
        return proposals * calls if full_step else proposals + calls - 1

    def nfe_per_step_search(self, proposals: int, full_step: bool = False) -> int:
        """Calls of one trajectory that scores `proposals` candidates at every searchable step."""
        searchable = set(self.searchable_steps())
        return sum(self.search_step_calls(i, proposals if i in searchable else 0, full_step)
                   for i in range(self.steps))

    def nfe_per_trajectory(self) -> int:
        """Denoiser calls of one full trajectory: 2·steps − 1 (no Heun correction at the last step)."""
        return sum(self.step_calls())
