"""Module-level helpers that executor workers import by name (process workers get the tests' sys.path,
Ray workers the PYTHONPATH the tests' fixture gives them)."""

from __future__ import annotations

import torch

from noisesearch.backends import EmbeddedDenoiser
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
