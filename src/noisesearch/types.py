"""Frozen records passed between the sampler, the Problem and the search algorithms."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
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
    paper's Table 3 (one network evaluation of one image = 1 NFE); evaluator_rewards: (C,) from
    the held-out evaluator when one was given; config: everything needed to rerun; metrics: the population
    metrics of the images when asked for (`noisesearch.metrics.population.MetricsPlan.compute`).
    """

    images: torch.Tensor
    rewards: torch.Tensor
    nfe: torch.Tensor
    wall_time: float
    config: dict[str, Any]
    evaluator_rewards: torch.Tensor | None = None
    trace: SearchTrace | None = None
    metrics: dict[str, Any] | None = None

    @property
    def nfe_per_image(self) -> float:
        """Mean NFE per returned image."""
        return float(self.nfe.double().mean())


TRACE_FIELDS = ("condition", "step", "sigma", "iteration", "winner_score", "incumbent_score", "winner_global",
                "changed", "mean_score")
DETAIL_FIELDS = ("candidate_scores", "candidate_global", "nfe")  # per row, where a Problem keeps trace detail
X0_FIELDS = ("x0_condition", "x0_step", "x0_image")  # per condition and searched step, likewise


class SearchTrace:
    """What a search recorded about its choices, as columns of one row per record."""

    def columns(self) -> dict[str, np.ndarray]:
        """The trace as equal-length arrays, one of them "condition" (the condition's index in the Problem)."""
        raise NotImplementedError

    def detail(self) -> dict[str, np.ndarray]:
        """What the search kept beyond the columns where a Problem asked for detail (none by default)."""
        return {}

    @classmethod
    def concatenated(cls, traces: list[Any], parts: list[torch.Tensor]) -> SearchTrace:
        """One trace from the traces of Problem parts, each part's conditions renumbered to its indices `parts[k]`."""
        raise NotImplementedError


@dataclass(frozen=True)
class Trace(SearchTrace):
    """Per condition, searched step and iteration of a per-step search, one row each (columns as tensors).

    sigma is the step's sigma_i; winner_score the best candidate score of the iteration; incumbent_score
    the incumbent's score after the iteration; winner_global whether that winner was a global (fresh
    standard normal) draw; changed whether the incumbent changed in the iteration; mean_score the mean
    score of the iteration's candidates (NaN where a stored trace holds none).
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
    # kept where the Problem asks for detail (trace_detail; `sample --trace`), else None: per row every
    # candidate's score and whether it was a global draw (NaN and False past the iteration's candidates) and the
    # condition's metered NFE after the iteration; per condition and searched step (x0_* rows), the leader's
    # x0 prediction as an image when the step ends. A search in parts (a set-level reward's, condition by
    # condition) joins the main columns only.
    candidate_scores: torch.Tensor | None = None
    candidate_global: torch.Tensor | None = None
    nfe: torch.Tensor | None = None
    x0_condition: torch.Tensor | None = None
    x0_step: torch.Tensor | None = None
    x0_image: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.condition)

    def to_dict(self) -> dict[str, list]:
        return {name: getattr(self, name).tolist() for name in TRACE_FIELDS}

    def columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).numpy() for name in TRACE_FIELDS}

    def detail(self) -> dict[str, np.ndarray]:
        """The detail columns that were kept (see the fields), as arrays."""
        return {name: getattr(self, name).numpy() for name in (*DETAIL_FIELDS, *X0_FIELDS)
                if getattr(self, name) is not None}

    @classmethod
    def concatenated(cls, traces: list[Trace], parts: list[torch.Tensor]) -> Trace:
        return cls(**{name: torch.cat([parts[k][t.condition] if name == "condition" else getattr(t, name)
                                       for k, t in enumerate(traces)])
                      for name in TRACE_FIELDS})


@dataclass(frozen=True)
class TreeTrace(SearchTrace):
    """Per condition, the step expanded by each simulation of a tree search (T when it reached x0 and cost
    nothing)."""

    expanded_steps: list[list[int]]

    def columns(self) -> dict[str, np.ndarray]:
        steps = self.expanded_steps
        return {"condition": np.array([c for c, row in enumerate(steps) for _ in row], dtype=np.int64),
                "expanded_step": np.array([s for row in steps for s in row], dtype=np.int64)}

    @classmethod
    def concatenated(cls, traces: list[TreeTrace], parts: list[torch.Tensor]) -> TreeTrace:
        rows = [row for t in traces for row in t.expanded_steps]
        return cls([rows[k] for k in torch.argsort(torch.cat(parts)).tolist()])
