"""Frozen records passed between the sampler, the Problem and the search algorithms."""

from __future__ import annotations

from dataclasses import dataclass
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
    """The state after a sampler step, the x0 prediction the step computed first (at sigma_hat_i) and
    the one of its Heun correction (at sigma_{i+1}; x_next itself at the last step)."""

    x_next: torch.Tensor
    x0_hat: torch.Tensor
    x0_next: torch.Tensor


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
    trace: Trace | None = None

    @property
    def nfe_per_image(self) -> float:
        """Mean NFE per returned image."""
        return float(self.nfe.double().mean())


TRACE_FIELDS = ("condition", "step", "sigma", "iteration", "winner_score", "incumbent_score", "winner_global",
                "changed", "mean_score")


@dataclass(frozen=True)
class Trace:
    """Per condition, searched step and iteration of a per-step search, one row each (columns as tensors).

    sigma is the step's sigma_i; winner_score the best candidate score of the iteration; incumbent_score
    the incumbent's score after the iteration; winner_global whether that winner was a global (fresh
    standard normal) draw; changed whether the incumbent changed in the iteration; mean_score the mean
    score of the iteration's candidates (NaN in traces written before it was recorded).
    """

    condition: torch.Tensor
    step: torch.Tensor
    sigma: torch.Tensor
    iteration: torch.Tensor
    winner_score: torch.Tensor
    incumbent_score: torch.Tensor
    winner_global: torch.Tensor
    changed: torch.Tensor
    mean_score: torch.Tensor

    def __len__(self) -> int:
        return len(self.condition)

    def to_dict(self) -> dict[str, list]:
        return {name: getattr(self, name).tolist() for name in TRACE_FIELDS}
