"""ODE solvers of a sampler step from sigma_hat_i to sigma_{i+1}, reusing the step's first denoiser call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Heun:
    """EDM's second-order step: Euler, then the trapezoidal correction with a second denoiser call at
    sigma_{i+1}, except at the last step (to sigma = 0). Calls per step: 2, 1 at the last."""

    name: ClassVar[str] = "heun"

    def calls(self, i: int, steps: int) -> int:
        return 1 if i == steps - 1 else 2

    def update(self, denoise: DenoiseFn, x_hat: torch.Tensor, x0_hat: torch.Tensor, t_hat: torch.Tensor,
               t_next: torch.Tensor, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """x_{i+1} and the correction's x0 prediction at sigma_{i+1} (x_{i+1} itself at the last step)."""
        d_cur = (x_hat - x0_hat) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if last:
            return x_next, x_next
        x0_next = denoise(x_next, t_next)
        d_prime = (x_next - x0_next) / t_next
        return x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime), x0_next


@dataclass(frozen=True)
class Euler:
    """The first-order step (k-diffusion's sample_euler, diffusers' Euler schedulers): no further call.
    Calls per step: 1."""

    name: ClassVar[str] = "euler"

    def calls(self, i: int, steps: int) -> int:
        return 1

    def update(self, denoise: DenoiseFn, x_hat: torch.Tensor, x0_hat: torch.Tensor, t_hat: torch.Tensor,
               t_next: torch.Tensor, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """x_{i+1} and the step's x0 prediction (x_{i+1} itself at the last step): Euler makes no call at
        sigma_{i+1}, so its latest x0 prediction is the one at sigma_hat_i."""
        x_next = x_hat + (t_next - t_hat) * ((x_hat - x0_hat) / t_hat)
        return x_next, x_next if last else x0_hat


@dataclass(frozen=True)
class EulerDDIM:
    """Euler's step written as DDIM's update x0 + (sigma_{i+1} / sigma_hat_i)·(x_hat − x0): the same step
    without the cancellation of x_hat + (sigma_{i+1} − sigma_hat_i)·d, which in float32 loses ~1e-7·sigma_hat_i
    where a flow schedule starts (sigma ~1e5 at t = 0.99999). Calls per step: 1."""

    name: ClassVar[str] = "euler_ddim"

    def calls(self, i: int, steps: int) -> int:
        return 1

    def update(self, denoise: DenoiseFn, x_hat: torch.Tensor, x0_hat: torch.Tensor, t_hat: torch.Tensor,
               t_next: torch.Tensor, last: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """As Euler.update."""
        x_next = x0_hat + (t_next / t_hat) * (x_hat - x0_hat)
        return x_next, x_next if last else x0_hat


SOLVERS = {cls.name: cls for cls in (Heun, Euler, EulerDDIM)}
