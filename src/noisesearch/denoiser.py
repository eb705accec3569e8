"""The one denoiser convention: D(x, sigma, cond) -> x0 in sigma space, and what a Problem asks of it."""

from __future__ import annotations

from typing import Protocol

import torch

from noisesearch.sampling import Sampler, make_sampler


class Denoiser(Protocol):
    """D(x, sigma, cond) -> x0; x (B, *image_shape), sigma (B,), cond (B, ...).

    image_shape: the shape of the sampler's state (pixels, or latents); nfe_per_call: NFE of one call
    for one row (2 with classifier-free guidance); label_dim: the number of class labels a label-
    conditioned network accepts (None: any condition); latent: whether states are latents that
    `decode` turns into images in [-1, 1]; default_sampler: the sampler registered as `name`, fitted
    to the model (e.g. its sigma range)."""

    image_shape: tuple[int, int, int]
    nfe_per_call: int
    label_dim: int | None
    latent: bool

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...

    def decode(self, states: torch.Tensor) -> torch.Tensor: ...

    def default_sampler(self, name: str = "heun", steps: int = 18) -> Sampler: ...


class DenoiserBase:
    """Defaults of the Denoiser protocol for a pixel-space model: 1 NFE per call, any condition, no
    decoding, the registered sampler as it is. Subclass it and set image_shape, then override what differs."""

    image_shape: tuple[int, int, int]
    nfe_per_call: int = 1
    label_dim: int | None = None
    latent: bool = False

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, states: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] of final states or x0 predictions (pixel models: the states clamped)."""
        return states.clamp(-1, 1)

    def default_sampler(self, name: str = "heun", steps: int = 18) -> Sampler:
        return make_sampler(name, steps)
