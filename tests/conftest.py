"""Shared fixtures: a tiny randomly initialised embedded-architecture model and toy problems."""

from __future__ import annotations

import os
import signal
from pathlib import Path

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


@pytest.fixture
def deadline():
    """No executor test hangs: each is stopped after 100 s (the executors wake every second to see signals).
    Modules opt in with pytestmark = pytest.mark.usefixtures("deadline")."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("an executor test ran over 100 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(100)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance of 2 CPUs on loopback, without the dashboard; its workers import the tests' helpers."""
    ray = pytest.importorskip("ray")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), old) if p)
    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


__all__ = ["make_problem", "tiny_denoiser"]
