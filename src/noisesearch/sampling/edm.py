"""The stochastic EDM sampler (Karras et al. 2022, Algorithm 2) as pure steps with explicit noise.

A step is split in two so that a candidate noise can be scored on its first denoiser call and
then stepped without calling the network again for the same input:

    x_hat  = churn(x, i, noise)                      # no network call
    x0_hat = D(x_hat, sigma_hat_i)                   # 1 call: score candidates on this
    x_next = heun_update(D, x_hat, x0_hat, i)        # 1 more call unless i is the last step
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from noisesearch.sampling.schedule import EDMSchedule

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class EDMSampler:
    """Step functions for one schedule; tensors have any leading batch shape."""

    def __init__(self, schedule: EDMSchedule) -> None:
        self.schedule = schedule
        self.sigmas = schedule.sigmas()
        self.sigma_hats = schedule.sigma_hats()
        self.gammas = schedule.gammas()
        self.steps = schedule.steps

    def initial_state(self, noise: torch.Tensor) -> torch.Tensor:
        """x at sigma_max from standard normal noise."""
        return noise * self.sigmas[0]

    def churn(self, x: torch.Tensor, i: int, noise: torch.Tensor | None) -> torch.Tensor:
        """Raise x from sigma_i to sigma_hat_i with sqrt(sigma_hat² − sigma_i²)·S_noise·noise."""
        if self.gammas[i] == 0:
            return x
        if noise is None:
            raise ValueError(f"step {i} has gamma > 0 and needs a noise tensor")
        scale = (self.sigma_hats[i] ** 2 - self.sigmas[i] ** 2).sqrt() * self.schedule.S_noise
        return x + scale * noise

    def heun_update(self, denoise: DenoiseFn, x_hat: torch.Tensor, x0_hat: torch.Tensor, i: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Euler step from sigma_hat_i to sigma_{i+1}, with Heun's correction except at the last step.

        Returns x_{i+1} and the correction's x0 prediction at sigma_{i+1} (x_{i+1} at the last step)."""
        t_hat, t_next = self.sigma_hats[i], self.sigmas[i + 1]
        d_cur = (x_hat - x0_hat) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur
        if i == self.steps - 1:
            return x_next, x_next
        x0_next = denoise(x_next, t_next)
        d_prime = (x_next - x0_next) / t_next
        return x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime), x0_next
