"""Frozen records passed between the sampler, the Problem and the search algorithms."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Proposal:
    """A candidate noise applied at step i: the churned state and its one-call x0 prediction."""

    step: int
    x_hat: torch.Tensor
    x0_hat: torch.Tensor


@dataclass(frozen=True)
class StepOut:
    """The state after a sampler step and the x0 prediction the step computed first."""

    x_next: torch.Tensor
    x0_hat: torch.Tensor


@dataclass(frozen=True)
class SearchResult:
    """One image per condition with its reward, the NFE spent on it and the run's config.

    images: (C, channels, H, W) in [-1, 1]; rewards and nfe: (C,), nfe counted per image as in the
    brief's Table 3 (one network evaluation of one image = 1 NFE); evaluator_rewards: (C,) from
    the held-out evaluator when one was given; config: everything needed to rerun.
    """

    images: torch.Tensor
    rewards: torch.Tensor
    nfe: torch.Tensor
    wall_time: float
    config: dict[str, Any]
    evaluator_rewards: torch.Tensor | None = None
    trace: list[Any] = field(default_factory=list)

    @property
    def nfe_per_image(self) -> float:
        """Mean NFE per returned image."""
        return float(self.nfe.double().mean())
