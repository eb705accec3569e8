"""Shared fixtures: a tiny randomly initialised embedded-architecture model and toy problems."""

from __future__ import annotations

import pytest
import torch

from noisesearch import EDMSchedule, Problem, get_reward
from noisesearch.backends import EmbeddedDenoiser
from noisesearch.models.unet import EDMPrecond, UNetConfig

torch.set_num_threads(1)  # tiny models: one thread avoids oversubscribing the 2 cores

TINY = UNetConfig(channels=(8, 16), emb_dim=16)


def tiny_denoiser(guidance: float = 1.0, seed: int = 0) -> EmbeddedDenoiser:
    """The embedded architecture at toy width with random weights (the output layer is perturbed so
    that the network is not the identity)."""
    torch.manual_seed(seed)
    model = EDMPrecond(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return EmbeddedDenoiser(model, guidance)


@pytest.fixture(scope="session")
def denoiser() -> EmbeddedDenoiser:
    return tiny_denoiser()


def make_problem(denoiser, labels, seeds, reward: str = "brightness", steps: int = 6, **kwargs) -> Problem:
    """A Problem over the tiny model with a short schedule."""
    return Problem(denoiser, get_reward(reward), torch.tensor(labels), seeds, EDMSchedule(steps=steps), **kwargs)
