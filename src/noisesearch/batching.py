"""`max_batch="auto"`: the rows per network call sized from the free memory of the device the model runs on.

On CUDA two unmetered probe calls (1 and 2 rows) measure the peak memory one more row adds; the batch is
the number of rows that fit in a fraction of the free memory, capped. Elsewhere (CPU, MPS) there is no
reliable free-memory reading, so "auto" is the default batch: calls carry real rows only, so a larger cap
would not speed up a one-image search, and on CPU per-row time barely falls beyond 16 rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from noisesearch.errors import NoiseSearchError

DEFAULT_MAX_BATCH = 16
AUTO_CAP = 256  # rows; larger calls gain nothing measurable and hurt latency of the first result
FREE_FRACTION = 0.8  # of the free device memory, leaving room for the reward model and the search's states


def parse_max_batch(value: int | str) -> int | str:
    """A positive integer or "auto", else a one-line NoiseSearchError."""
    if value == "auto":
        return value
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise NoiseSearchError(f"max_batch must be a positive integer or 'auto', got '{value}'") from None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise NoiseSearchError(f"max_batch must be a positive integer or 'auto', got {value}")
    return value


def rows_that_fit(bytes_per_row: float, free_bytes: int, fixed_bytes: float = 0.0) -> int:
    """Rows per call whose peak memory (fixed_bytes + rows·bytes_per_row) stays within FREE_FRACTION of
    free_bytes, between 1 and AUTO_CAP."""
    room = FREE_FRACTION * free_bytes - fixed_bytes
    if bytes_per_row <= 0:
        return AUTO_CAP
    return max(1, min(AUTO_CAP, int(room // bytes_per_row)))


def probe_bytes(call_rows: Callable[[int], None], reset_peak: Callable[[], None], peak: Callable[[], int]
                ) -> tuple[float, float]:
    """(bytes per row, fixed bytes) of a call's peak memory, from one call of 1 row and one of 2 rows."""
    growth = []
    for rows in (1, 2):
        reset_peak()
        before = peak()
        call_rows(rows)
        growth.append(peak() - before)
    per_row = max(growth[1] - growth[0], 0)
    return float(per_row), float(max(growth[0] - per_row, 0))


def auto_max_batch(denoiser: Callable[..., torch.Tensor], image_shape: tuple[int, ...], cond: torch.Tensor,
                   sigma: float, device: str) -> int:
    """Rows per call for `denoiser` on `device`: sized from CUDA's free memory, DEFAULT_MAX_BATCH elsewhere."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return DEFAULT_MAX_BATCH

    def call_rows(rows: int) -> None:
        with torch.no_grad():
            denoiser(torch.zeros(rows, *image_shape), torch.full((rows,), sigma),
                     cond[:1].expand(rows, *cond.shape[1:]))
        torch.cuda.synchronize()

    per_row, fixed = probe_bytes(call_rows, torch.cuda.reset_peak_memory_stats, torch.cuda.max_memory_allocated)
    free, _ = torch.cuda.mem_get_info()
    return rows_that_fit(per_row, free, fixed)
