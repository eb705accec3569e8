"""Noise-level schedules: the sigma of each sampler step, in the one denoiser convention's sigma space."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from noisesearch.errors import NoiseSearchError


@dataclass(frozen=True)
class KarrasSchedule:
    """EDM's sigmas (Karras et al. 2022, eq. 5): sigma_max^(1/rho) to sigma_min^(1/rho), linearly, to the
    power rho, then a final 0."""

    kind: ClassVar[str] = "karras"
    steps: int = 18
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise NoiseSearchError(f"steps must be an integer of at least 1, got {self.steps}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise NoiseSearchError("need 0 < sigma_min < sigma_max")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sigmas(self) -> torch.Tensor:
        """sigma_0 > ... > sigma_{steps-1} then a final 0: shape (steps + 1,), float32."""
        i = torch.arange(self.steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        denom = max(self.steps - 1, 1)
        t = (hi + i / denom * (lo - hi)) ** self.rho
        return torch.cat([t, torch.zeros(1, dtype=torch.float64)]).float()


SCHEDULES = {cls.kind: cls for cls in (KarrasSchedule,)}
