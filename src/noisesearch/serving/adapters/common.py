"""What the adapters share: images as the PIL pictures the verifiers' own preprocessing expects."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

Score = Callable[[torch.Tensor, list[str]], torch.Tensor]


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Images (N, C, H, W) in [-1, 1] as 8-bit RGB pictures (rounded as a saved PNG is; one channel repeated)."""
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    return [Image.fromarray(p.permute(1, 2, 0).numpy()) for p in pixels]
