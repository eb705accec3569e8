"""Rectified flow in the one denoiser convention (as k-diffusion wraps DDPM models into sigma space).

A flow model predicts the velocity v = noise − x0 on x_t = (1 − t)·x0 + t·noise. Divided by 1 − t, that
state is x0 + sigma·noise with sigma = t / (1 − t): the sigma-space state x. So D(x, sigma) is the flow
model's x0 prediction x_t − t·v at t = sigma / (1 + sigma) and x_t = x / (1 + sigma), and every sampler and
search works on flow models unchanged. Euler in sigma space is then exactly the flow ODE's Euler step
x_t' = x_t + (t' − t)·v: both keep the x0 and noise predictions and re-mix them at the next level.
"""

from __future__ import annotations

import torch


def flow_inputs(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow state x_t and time t (shaped (B,)) of sigma-space states x (B, ...) at sigma (B,)."""
    s = sigma.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return x / (1 + s), (sigma / (1 + sigma)).to(x.dtype).reshape(-1)


def flow_x0(x_t: torch.Tensor, t: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
    """The x0 prediction x_t − t·v of a velocity prediction at flow time t (B,)."""
    return x_t - t.reshape(-1, *([1] * (x_t.dim() - 1))) * velocity
