"""A sampler: a noise-level schedule × a solver × where noise enters, as pure steps with explicit noise.

A step is split in two so that a candidate noise can be scored on its first denoiser call and then
stepped without calling the network again for the same input:

    x_hat          = propose(x, i, noise)                 # no network call
    x0_hat         = D(x_hat, sigma_hat_i)                # 1 call: score candidates on this
    x_next, x0_nxt = advance(D, x_hat, x0_hat, i)         # the solver's further calls (Heun: 1, 0 at the last step)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.sampling.noise import Churn
from noisesearch.sampling.schedules import SCHEDULES, FlowSchedule, KarrasSchedule
from noisesearch.sampling.solvers import SOLVERS, DenoiseFn, Euler, EulerDDIM, Heun


@runtime_checkable
class Sampler(Protocol):
    """What a Problem needs of a sampler; tensors have any leading batch shape."""

    steps: int
    sigmas: torch.Tensor  # (steps + 1,): the level x has before step i, then a final 0
    sigma_hats: torch.Tensor  # (steps,): the level the denoiser sees at step i

    def initial_state(self, noise: torch.Tensor) -> torch.Tensor: ...

    def searchable_steps(self) -> list[int]: ...

    def step_calls(self) -> list[int]: ...

    def propose(self, x: torch.Tensor, i: int, noise: torch.Tensor | None) -> torch.Tensor: ...

    def advance(self, denoise: DenoiseFn, x_hat: torch.Tensor, x0_hat: torch.Tensor, i: int
                ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class StochasticSampler:
    """Steps of `solver` over the sigmas of `schedule` with `noise` injected before each step's call
    (EDM's Algorithm 2 with Heun; k-diffusion's sample_euler with churn for Euler)."""

    schedule: KarrasSchedule | FlowSchedule = field(default_factory=KarrasSchedule)
    solver: Heun | Euler | EulerDDIM = field(default_factory=Heun)
    noise: Churn = field(default_factory=Churn)
    sigmas: torch.Tensor = field(init=False, repr=False, compare=False)
    sigma_hats: torch.Tensor = field(init=False, repr=False, compare=False)
    gammas: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        sigmas = self.schedule.sigmas()
        gammas = self.noise.gammas(sigmas[:-1])
        object.__setattr__(self, "sigmas", sigmas)
        object.__setattr__(self, "gammas", gammas)
        object.__setattr__(self, "sigma_hats", sigmas[:-1] * (1 + gammas))

    @property
    def steps(self) -> int:
        return self.schedule.steps

    def to_dict(self) -> dict[str, Any]:
        """Flat and complete: enough to rebuild the sampler with `sampler_from_dict`."""
        return {"solver": self.solver.name, "schedule": self.schedule.kind, **self.schedule.to_dict(),
                **self.noise.to_dict()}

    def initial_state(self, noise: torch.Tensor) -> torch.Tensor:
        """x at sigma_0 from standard normal noise."""
        return noise * self.sigmas[0]

    def searchable_steps(self) -> list[int]:
        """Steps whose injected noise has an effect (gamma_i > 0)."""
        return [i for i, g in enumerate(self.gammas.tolist()) if g > 0]

    def step_calls(self) -> list[int]:
        """Denoiser calls of each step run once (the first call and the solver's further ones)."""
        return [self.solver.calls(i, self.steps) for i in range(self.steps)]

    def propose(self, x: torch.Tensor, i: int, noise: torch.Tensor | None) -> torch.Tensor:
        """x raised from sigma_i to sigma_hat_i with `noise` (x itself where gamma_i = 0)."""
        if self.gammas[i] == 0:
            return x
        if noise is None:
            raise NoiseSearchError(f"step {i} injects noise and needs a noise tensor")
        return self.noise.inject(x, self.sigmas[i], self.sigma_hats[i], noise)

    def advance(self, denoise: DenoiseFn, x_hat: torch.Tensor, x0_hat: torch.Tensor, i: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """The solver's step from sigma_hat_i to sigma_{i+1} reusing x0_hat: x_{i+1} and the latest x0 prediction."""
        return self.solver.update(denoise, x_hat, x0_hat, self.sigma_hats[i], self.sigmas[i + 1], i == self.steps - 1)


def sampler_from_dict(data: dict[str, Any]) -> StochasticSampler:
    """The sampler of `to_dict` (also the flat EDMSchedule dicts of earlier versions: Heun, Karras, churn)."""
    data = dict(data)
    solver, kind = data.pop("solver", "heun"), data.pop("schedule", "karras")
    if solver not in SOLVERS or kind not in SCHEDULES:
        raise NoiseSearchError(f"unknown solver '{solver}' or schedule '{kind}' in a sampler description")
    schedule_cls = SCHEDULES[kind]
    names = set(schedule_cls.__dataclass_fields__)
    unknown = sorted(set(data) - names - set(Churn.__dataclass_fields__))
    if unknown:
        raise NoiseSearchError(f"unknown sampler settings {', '.join(unknown)}")
    try:
        return StochasticSampler(schedule_cls(**{k: v for k, v in data.items() if k in names}), SOLVERS[solver](),
                                 Churn(**{k: v for k, v in data.items() if k not in names}))
    except TypeError as err:
        raise NoiseSearchError(f"malformed sampler description: {err}") from None
