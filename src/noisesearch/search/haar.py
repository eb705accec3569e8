"""The orthonormal 2-D Haar wavelet transform (PyWavelets' `wavedec2`/`waverec2` with 'db1' on sides divisible by
2^level), in torch over the last two dimensions: Spectral Evolution Search's split of the initial noise into its
low-frequency band and the detail bands. Orthonormal, so white standard normal noise has a white standard normal
low band. Written here (a few lines, tested for inversion and energy preservation) rather than through PyWavelets,
which works on NumPy arrays one sample at a time."""

from __future__ import annotations

import torch

from noisesearch.errors import NoiseSearchError

# per level, finest first: the horizontal, vertical and diagonal detail bands
Details = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def deepest_level(height: int, width: int, most: int = 4) -> int:
    """The largest level ≤ `most` whose 2^level divides both sides (0 where a side is odd)."""
    level = 0
    while level < most and height % 2 ** (level + 1) == 0 and width % 2 ** (level + 1) == 0:
        level += 1
    return level


def haar_split(x: torch.Tensor, level: int) -> tuple[torch.Tensor, Details]:
    """x (..., H, W) as its low band (..., H/2^level, W/2^level) and its detail bands."""
    if x.shape[-2] % 2**level or x.shape[-1] % 2**level:
        raise NoiseSearchError(f"a Haar transform of level {level} needs sides divisible by {2 ** level}, got "
                               f"{tuple(x.shape[-2:])}")
    details: Details = []
    low = x
    for _ in range(level):
        a, b = low[..., 0::2, 0::2], low[..., 0::2, 1::2]
        c, d = low[..., 1::2, 0::2], low[..., 1::2, 1::2]
        low = (a + b + c + d) / 2
        details.append(((a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2))
    return low, details


def haar_merge(low: torch.Tensor, details: Details) -> torch.Tensor:
    """The inverse of haar_split: x from its low band and detail bands (which broadcast against the low band)."""
    for h, v, g in reversed(details):
        a, b = (low + h + v + g) / 2, (low - h + v - g) / 2
        c, d = (low + h - v - g) / 2, (low - h - v + g) / 2
        low = interleave(a, b, c, d)
    return low


def interleave(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The (..., 2h, 2w) array whose even rows hold a (even columns) and b (odd), odd rows c and d."""
    a, b, c, d = torch.broadcast_tensors(a, b, c, d)
    top = torch.stack((a, b), dim=-1).flatten(-2)
    bottom = torch.stack((c, d), dim=-1).flatten(-2)
    return torch.stack((top, bottom), dim=-2).flatten(-3, -2)
