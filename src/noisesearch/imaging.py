"""Images in [-1, 1] to uint8 arrays, PNG files and grids."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] -> (B, H, W) for one channel or (B, H, W, C), uint8, rounded."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.permute(0, 2, 3, 1).numpy()
    return x[..., 0] if x.shape[-1] == 1 else x


def quantized(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images in [-1, 1] as their uint8 files hold them (see to_uint8), back in [-1, 1] as float."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def make_grid(images: torch.Tensor, ncol: int, pad: int = 2, scale: int = 1) -> Image.Image:
    """Tile (B, C, H, W) images into a grid `ncol` wide, with `pad` black pixels between tiles."""
    pixels = to_uint8(images)
    b, h, w = pixels.shape[:3]
    nrow = -(-b // ncol)
    canvas = np.zeros((nrow * (h + pad) + pad, ncol * (w + pad) + pad, *pixels.shape[3:]), dtype=np.uint8)
    for k, tile in enumerate(pixels):
        r, c = divmod(k, ncol)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = tile
    img = Image.fromarray(canvas)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def png_bytes(pixels: np.ndarray) -> bytes:
    """A uint8 image (H, W) or (H, W, C) (see to_uint8) as PNG bytes, for pages that inline their images."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(image: torch.Tensor, path: Path) -> None:
    """Write one (C, H, W) image in [-1, 1] as a PNG."""
    Image.fromarray(to_uint8(image[None])[0]).save(path)
