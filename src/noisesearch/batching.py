"""Rows per network call, in one place: parsing `max_batch`, probing what a call costs, sizing "auto".

`parse_max_batch` is the one check of a user's max_batch (make_problem, Problem, bench and the command line).
`probe_call` is the one unmetered call that times a denoiser and measures its peak memory; the run estimate,
bench's memory schedule and "auto" all read it.

`max_batch="auto"` sizes calls from the free memory of the device the model runs on. On CUDA two probe calls
(1 and 2 rows) measure the peak memory one more row adds; the batch is the number of rows that fit in a
fraction of the free memory, capped. Elsewhere (CPU, MPS) there is no reliable free-memory reading, so "auto"
is the default batch: calls carry real rows only, so a larger cap would not speed up a one-image search, and
on CPU per-row time barely falls beyond 16 rows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from noisesearch.errors import NoiseSearchError

DEFAULT_MAX_BATCH = 16
# The most rows per call a user may ask for: batch-invariant mode allocates every call at max_batch rows, and
# 65,536 rows are already 200 MiB of MNIST images and 16 GiB of SDXL latents in float32; more is a typo that would
# end in an allocation error deep in a run (AUTO_CAP below is what "auto" ever chooses).
MAX_BATCH = 65_536
AUTO_CAP = 256  # rows; larger calls gain nothing measurable and hurt latency of the first result
FREE_FRACTION = 0.8  # of the free device memory, leaving room for the reward model and the search's states
MB = 2**20


def parse_max_batch(value: object, fixed_for: str | None = None) -> int | str:
    """Rows per network call from a user's value: a positive int (or its digits, from a command line), or
    "auto" unless `fixed_for` names what needs a fixed call shape (batch-invariant mode, bench). Any other
    value is the same one-line NoiseSearchError from every entry point."""
    if isinstance(value, str) and value == "auto":
        if fixed_for is None:
            return value
        raise NoiseSearchError(f"{fixed_for} needs a fixed max_batch, not 'auto'")
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        shown = str(value)
        raise NoiseSearchError(f"max_batch must be a positive integer or 'auto', got "
                               f"{shown if shown.isprintable() and shown == shown.strip() != '' else repr(shown)}")
    if value > MAX_BATCH:
        raise NoiseSearchError(f"max_batch must be at most {MAX_BATCH:,} rows per call, got {value:,}")
    return value


def peak_memory_mb() -> float:
    """The process's peak memory so far: CUDA's allocator where CUDA is in use, else the host's peak resident
    set (0 where the platform cannot tell)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / MB
    try:
        import resource
    except ImportError:  # not POSIX
        return 0.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def module_mb(owner: object) -> float:
    """Parameters and buffers of the torch modules among `owner`'s attributes (each module counted once)."""
    modules = {id(m): m for m in vars(owner).values() if isinstance(m, torch.nn.Module)}
    tensors = {id(t): t for m in modules.values() for t in [*m.parameters(), *m.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values()) / MB


@dataclass(frozen=True)
class CallProbe:
    """What one network call cost: wall seconds and the growth of the peak memory (MB) it caused."""

    seconds: float
    peak_mb: float


def probe_call(denoiser: Callable[..., torch.Tensor], rows: int, sigma: float, cond: torch.Tensor) -> CallProbe:
    """One unmetered call of `rows` rows (zeros at `sigma`, each conditioned on cond[0]), timed, and the peak
    memory it added: on CUDA the peak is reset first, so the call measures its own; the host's peak resident
    set only grows, so there a call that stays under an earlier peak adds nothing."""
    x = torch.zeros(rows, *denoiser.image_shape)
    sigmas = torch.full((rows,), sigma)
    conds = cond[:1].expand(rows, *cond.shape[1:])
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = peak_memory_mb()
    start = time.perf_counter()
    with torch.no_grad():
        denoiser(x, sigmas, conds)
    if cuda:
        torch.cuda.synchronize()
    return CallProbe(time.perf_counter() - start, max(0.0, peak_memory_mb() - before))


def per_row_and_fixed(one_row_mb: float, two_rows_mb: float) -> tuple[float, float]:
    """(MB per row, fixed MB) of a call's peak memory, from the peak growth of a 1-row and a 2-row call."""
    per_row = max(two_rows_mb - one_row_mb, 0.0)
    return per_row, max(one_row_mb - per_row, 0.0)


def rows_that_fit(bytes_per_row: float, free_bytes: int, fixed_bytes: float = 0.0) -> int:
    """Rows per call whose peak memory (fixed_bytes + rows·bytes_per_row) stays within FREE_FRACTION of
    free_bytes, between 1 and AUTO_CAP."""
    room = FREE_FRACTION * free_bytes - fixed_bytes
    if bytes_per_row <= 0:
        return AUTO_CAP
    return max(1, min(AUTO_CAP, int(room // bytes_per_row)))


def auto_max_batch(denoiser: Callable[..., torch.Tensor], cond: torch.Tensor, sigma: float, device: str) -> int:
    """Rows per call for `denoiser` on `device`: sized from CUDA's free memory, DEFAULT_MAX_BATCH elsewhere."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return DEFAULT_MAX_BATCH
    per_row, fixed = per_row_and_fixed(*(probe_call(denoiser, rows, sigma, cond).peak_mb for rows in (1, 2)))
    free, _ = torch.cuda.mem_get_info()
    return rows_that_fit(per_row * MB, free, fixed * MB)
