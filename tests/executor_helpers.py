"""Module-level helpers that executor workers import by name (process workers get the tests' sys.path,
Ray workers the PYTHONPATH the tests' fixture gives them)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from noisesearch.backends import EmbeddedDenoiser
from noisesearch.executors import ProcessExecutor, RayExecutor, SerialExecutor
from noisesearch.testing import tiny_denoiser

FAILING_GUIDANCE = 0.5  # the guidance of the column whose cells fail


class LateNaNDenoiser(EmbeddedDenoiser):
    """The tiny model, returning NaN below sigma 1: a cell fails in its last steps (the driver's one call, at
    the first sigma, still works)."""

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        out = super().__call__(x, sigma, cond)
        return out if float(sigma.min()) >= 1.0 else torch.full_like(out, float("nan"))


def failing_loader(guidance: float) -> EmbeddedDenoiser:
    """tiny_denoiser, whose cells fail at guidance FAILING_GUIDANCE."""
    model = tiny_denoiser(guidance)
    return LateNaNDenoiser(model.model, guidance) if guidance == FAILING_GUIDANCE else model


def executor(kind: str, request: pytest.FixtureRequest) -> SerialExecutor | ProcessExecutor | RayExecutor:
    if kind == "ray":
        request.getfixturevalue("ray_instance")
        return RayExecutor(retries=2)
    return ProcessExecutor(workers=2, retries=2) if kind == "process" else SerialExecutor()


def ray_task_pids() -> list[int]:
    """Pids of the Ray workers running one of our tasks now (Ray titles them ray::execute)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::execute"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_a_busy_worker(busy_pids: Callable[[], list[int]], ready: Callable[[], bool], killed: list[int]) -> None:
    """Once `ready()` (the workers are warm: a task is written), SIGKILL a worker that is running one."""
    stop = time.monotonic() + 60
    while time.monotonic() < stop:
        if ready():
            pids = busy_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
        time.sleep(0.005)
