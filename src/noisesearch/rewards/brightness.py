"""Brightness reward."""

from __future__ import annotations

import torch

from noisesearch.rewards.registry import register_reward


@register_reward("brightness")
class Brightness:
    """Mean intensity in [0, 1]: r = mean over channels and pixels of (x + 1) / 2."""

    name = "brightness"

    def __call__(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return ((images.clamp(-1, 1) + 1) / 2).flatten(1).mean(1)
