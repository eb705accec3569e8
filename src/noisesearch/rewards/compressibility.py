"""JPEG compressibility reward."""

from __future__ import annotations

import io
import numbers
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from noisesearch.errors import NoiseSearchError
from noisesearch.imaging import to_uint8
from noisesearch.rewards.registry import register_reward


def jpeg_size(pixels: np.ndarray, quality: int) -> int:
    """Bytes of one (H, W) or (H, W, 3) uint8 image encoded by Pillow as JPEG at `quality`."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return buf.tell()


@lru_cache(maxsize=16)
def size_bounds(shape: tuple[int, ...], quality: int) -> tuple[int, int]:
    """JPEG sizes of a flat mid-grey image and of uniform noise (seed 0) of this shape."""
    flat = np.full(shape, 128, dtype=np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    return jpeg_size(flat, quality), jpeg_size(noise, quality)


@register_reward("compressibility")
class Compressibility:
    """JPEG compressibility in [0, 1]: r = clip((s_noise − s) / (s_noise − s_flat), 0, 1).

    s is the JPEG size in bytes of the image (Pillow, quality 95 by default); s_flat and s_noise are
    the sizes of a flat grey image and of uniform noise of the same shape at the same quality, so a
    flat image scores 1 and noise about 0. Encoding is one Pillow call per image.
    """

    name = "compressibility"

    def __init__(self, quality: int = 95) -> None:
        if isinstance(quality, bool) or not isinstance(quality, numbers.Integral) or not 0 <= quality <= 100:
            raise NoiseSearchError(f"compressibility quality must be an integer from 0 to 100 (JPEG quality; "
                                   f"default 95), got {quality!r}")
        self.quality = int(quality)

    def __call__(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        pixels = to_uint8(images)
        s_flat, s_noise = size_bounds(pixels.shape[1:], self.quality)
        sizes = torch.tensor([jpeg_size(p, self.quality) for p in pixels], dtype=torch.float32)
        return ((s_noise - sizes) / (s_noise - s_flat)).clamp(0, 1)
