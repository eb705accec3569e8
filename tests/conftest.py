"""Shared fixtures: a tiny randomly initialised embedded-architecture model and toy problems."""

from __future__ import annotations

import pytest
import torch

from noisesearch import Problem, get_reward, make_sampler
from noisesearch.backends import EmbeddedDenoiser
from noisesearch.testing import tiny_denoiser

torch.set_num_threads(1)  # tiny models: one thread avoids oversubscribing the 2 cores


@pytest.fixture(scope="session")
def denoiser() -> EmbeddedDenoiser:
    return tiny_denoiser()


def make_problem(denoiser, labels, seeds, reward: str = "brightness", steps: int = 6, sampler: str = "heun",
                 **kwargs) -> Problem:
    """A Problem over the tiny model with a short schedule."""
    return Problem(denoiser, get_reward(reward), torch.tensor(labels), seeds, make_sampler(sampler, steps), **kwargs)


__all__ = ["make_problem", "tiny_denoiser"]
