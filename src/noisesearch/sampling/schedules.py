"""Noise-level schedules: the sigma of each sampler step, in the one denoiser convention's sigma space."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch

from noisesearch.checks import check_finite, is_int, shown
from noisesearch.errors import NoiseSearchError

# The most sampler steps: EDM samples in 18 to 256 steps, and 10,000 steps are already 10,000 network calls per
# image; larger counts are typos (or `steps=10**12`), whose schedule alone would exhaust memory.
MAX_STEPS = 10_000


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
        check_steps(self.steps)
        for name in ("sigma_min", "sigma_max", "rho"):
            check_finite(getattr(self, name), name)
        if not 0 < self.sigma_min < self.sigma_max:
            raise NoiseSearchError(f"need 0 < sigma_min < sigma_max, got sigma_min {self.sigma_min} and sigma_max "
                                   f"{self.sigma_max}")
        if not self.rho > 0:
            raise NoiseSearchError(f"rho must be positive, got {self.rho}")
        check_sigmas(self, "use a rho nearer 7")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sigmas(self) -> torch.Tensor:
        """sigma_0 > ... > sigma_{steps-1} then a final 0: shape (steps + 1,), float32."""
        i = torch.arange(self.steps, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        denom = max(self.steps - 1, 1)
        t = (hi + i / denom * (lo - hi)) ** self.rho
        return torch.cat([t, torch.zeros(1, dtype=torch.float64)]).float()


def check_steps(steps: object) -> None:
    """A one-line error unless `steps` is an integer from 1 to MAX_STEPS."""
    if not is_int(steps) or not 1 <= steps <= MAX_STEPS:
        raise NoiseSearchError(f"steps must be an integer from 1 to {MAX_STEPS:,}, got {shown(steps)}")


def check_sigmas(schedule: KarrasSchedule | FlowSchedule, advice: str) -> None:
    """A one-line error unless every step's sigma is finite and positive in float32 (extreme settings overflow to
    inf or round to 0, where the solver would divide by zero)."""
    try:
        sigmas = schedule.sigmas()[:-1]
    except OverflowError:
        sigmas = torch.tensor([math.inf])
    if not bool((torch.isfinite(sigmas) & (sigmas > 0)).all()):
        raise NoiseSearchError(f"these {schedule.kind} schedule settings give sigmas outside (0, inf) in float32: "
                               f"{advice}")


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3's timestep shift t' = s·t / (1 + (s − 1)·t) (FLUX's exponential shift with s = e^mu)."""
    return shift * t / (1 + (shift - 1) * t)


@dataclass(frozen=True)
class FlowSchedule:
    """A rectified-flow schedule in sigma space, as diffusers' FlowMatchEulerDiscreteScheduler makes it: flow
    times t_i = shift_time(linspace(1, t_min, steps)), each mapped to sigma_i = t_i / (1 − t_i) (a flow state
    x_t = (1 − t)·x0 + t·noise, divided by 1 − t, is x0 + sigma·noise), then a final 0.

    t = 1 is sigma = inf, so the first time is t_max instead (default 0.99999, sigma ~1e5: the state keeps
    all but 1e-5 of the noise's weight, where the pipelines start at exactly 1). t_min is the last time
    before 0: SD3's scheduler uses its shifted 1/1000, FLUX's pipeline 1/steps."""

    kind: ClassVar[str] = "flow"
    steps: int = 18
    shift: float = 1.0
    t_max: float = 0.99999
    t_min: float = 0.001

    def __post_init__(self) -> None:
        check_steps(self.steps)
        for name in ("shift", "t_max", "t_min"):
            check_finite(getattr(self, name), name)
        if not self.shift > 0:
            raise NoiseSearchError(f"the flow shift must be positive, got {self.shift}")
        if not 0 < self.t_min < self.t_max < 1:
            raise NoiseSearchError(f"need 0 < t_min < t_max < 1, got t_min {self.t_min} and t_max {self.t_max}")
        if self.steps > 1 and not self.t_max > float(self.times()[1]):
            raise NoiseSearchError(f"t_max {self.t_max} must exceed the second flow time {float(self.times()[1])}")
        check_sigmas(self, "use a shift nearer 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def times(self) -> torch.Tensor:
        """Flow times t_0 = t_max > t_1 > ... > t_{steps-1} (float64)."""
        t = shift_time(torch.linspace(1.0, self.t_min, self.steps, dtype=torch.float64), self.shift)
        t[0] = self.t_max
        return t

    def sigmas(self) -> torch.Tensor:
        """sigma_i = t_i / (1 − t_i), then a final 0: shape (steps + 1,), float32."""
        t = self.times()
        return torch.cat([t / (1 - t), torch.zeros(1, dtype=torch.float64)]).float()


SCHEDULES = {cls.kind: cls for cls in (KarrasSchedule, FlowSchedule)}
