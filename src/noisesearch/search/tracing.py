"""Recording per-step search traces and the statistics of the paper's Fig. 2 over them (k̄(σ) in two definitions,
with bootstrap intervals over conditions, and the global-win rate)."""

from __future__ import annotations

import math

import numpy as np
import torch

from noisesearch.types import DETAIL_FIELDS, TRACE_FIELDS, X0_FIELDS, Trace


class TraceRecorder:
    """Collects one row per condition for every iteration of a per-step search; with `detail` (a Problem's
    trace_detail) also every candidate's score and kind, the metered NFE after each iteration, and the
    leader's x0 prediction (as an image) when each searched step ends."""

    def __init__(self, detail: bool = False) -> None:
        self.detail = detail
        self._rows: dict[str, list[torch.Tensor]] = {name: [] for name in TRACE_FIELDS}
        self._detail: dict[str, list[torch.Tensor]] = {name: [] for name in DETAIL_FIELDS}
        self._x0: dict[str, list[torch.Tensor]] = {name: [] for name in X0_FIELDS}

    def record(self, conditions: torch.Tensor, step: int, sigma: float, iteration: int, winner_score: torch.Tensor,
               incumbent_score: torch.Tensor, winner_global: torch.Tensor, changed: torch.Tensor,
               mean_score: torch.Tensor, *, scores: torch.Tensor | None = None,
               is_global: torch.Tensor | None = None, nfe: torch.Tensor | None = None) -> None:
        """One row per condition of `conditions`; `scores`, `is_global` (C', candidates) and `nfe` (C',) are kept
        where the recorder keeps detail."""
        n = len(conditions)
        if self.detail:
            for name, value in zip(DETAIL_FIELDS, (scores, is_global, nfe), strict=True):
                self._detail[name].append(value.detach().clone())
        values = {
            "condition": conditions, "step": torch.full((n,), step), "sigma": torch.full((n,), float(sigma)),
            "iteration": torch.full((n,), iteration), "winner_score": winner_score,
            "incumbent_score": incumbent_score, "winner_global": winner_global, "changed": changed,
            "mean_score": mean_score,
        }
        for name, value in values.items():
            self._rows[name].append(value.detach().clone())

    def record_x0(self, conditions: torch.Tensor, step: int, images: torch.Tensor) -> None:
        """The leaders' x0 predictions (C', channels, H, W images) when searched step `step` ends (detail only)."""
        if self.detail:
            self._x0["x0_condition"].append(conditions.clone())
            self._x0["x0_step"].append(torch.full((len(conditions),), step))
            self._x0["x0_image"].append(images.detach().float().cpu())

    def build(self) -> Trace:
        empty = {"winner_global": torch.bool, "changed": torch.bool, "sigma": torch.float32,
                 "winner_score": torch.float32, "incumbent_score": torch.float32, "mean_score": torch.float32}
        rows = {name: torch.cat(rows) if rows else torch.zeros(0, dtype=empty.get(name, torch.long))
                for name, rows in self._rows.items()}
        if not self.detail:
            return Trace(**rows)
        width = max((s.shape[1] for s in self._detail["candidate_scores"]), default=0)
        padded = {"candidate_scores": [pad(s, width, math.nan) for s in self._detail["candidate_scores"]],
                  "candidate_global": [pad(g, width, False) for g in self._detail["candidate_global"]],
                  "nfe": self._detail["nfe"]}
        detail = {name: torch.cat(parts) if parts else None for name, parts in {**padded, **self._x0}.items()}
        return Trace(**rows, **detail)


def pad(values: torch.Tensor, width: int, fill: float | bool) -> torch.Tensor:
    """values (rows, n) padded on the right with `fill` to (rows, width)."""
    extra = torch.full((values.shape[0], width - values.shape[1]), fill, dtype=values.dtype)
    return torch.cat([values, extra], dim=1)


KBAR_DEFINITIONS = ("wins", "paper")


def kbar_per_condition(trace: Trace, definition: str = "wins") -> list[tuple[int, float, np.ndarray]]:
    """Per searched step: (step, sigma, k̄ of each condition there), two definitions of the paper's Fig. 2.

    I_k = 1 when iteration k (1-based) took a global draw: its winner was a fresh standard-normal draw and
    became the pivot (every winner does without elitism, the paper's Algorithm 1). With K_c iterations at
    the step,
    - "wins": the mean of (k − 1) over the iterations with I_k = 1 (NaN if none): *when* global draws win;
    - "paper": Σ_k (k − 1)·I_k / (K_c − 1), the paper's sum normalised so that a global draw winning every
      iteration gives K_c / 2 (10 at K = 20, the paper's "k̄ = 10"): it also falls when global draws win
      *less often*. 0 when K_c = 1.
    """
    if definition not in KBAR_DEFINITIONS:
        raise ValueError(f"unknown k̄ definition '{definition}': choose one of {', '.join(KBAR_DEFINITIONS)}")
    took = (trace.winner_global & trace.changed).numpy()
    step_of, condition_of, k_of = trace.step.numpy(), trace.condition.numpy(), trace.iteration.numpy()
    rows = []
    for step in np.unique(step_of).tolist():
        at = step_of == step
        values = []
        for c in np.unique(condition_of[at]).tolist():
            mine = at & (condition_of == c)
            k, won = k_of[mine] - 1, took[mine]
            if definition == "wins":
                values.append(k[won].mean() if won.any() else np.nan)
            else:
                values.append(float((k * won).sum()) / max(len(k) - 1, 1))
        rows.append((int(step), float(trace.sigma.numpy()[at][0]), np.asarray(values, dtype=np.float64)))
    return rows


def bootstrap_interval(values: np.ndarray, reps: int = 1000, level: float = 0.9, seed: int = 0
                       ) -> tuple[float, float, float]:
    """(mean, lower, upper): the mean of the finite `values` and its percentile bootstrap interval at
    `level` over resampled conditions (NaN, NaN, NaN when none is finite)."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return (float("nan"),) * 3
    means = np.random.default_rng(seed).choice(finite, size=(reps, len(finite))).mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(finite.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def step_statistics(trace: Trace) -> list[dict[str, float]]:
    """Per searched step: sigma, k̄ of both definitions (`kbar_per_condition`; "k_bar" the mean over the
    conditions of the "wins" one, NaN if no condition had a global win there, "k_bar_paper" of the
    "paper" one) and the global-win rate: the fraction of iterations whose winning candidate was a global
    draw (taken or not)."""
    wins, paper = kbar_per_condition(trace, "wins"), kbar_per_condition(trace, "paper")
    stats = []
    for (step, sigma, k_wins), (_, _, k_paper) in zip(wins, paper, strict=True):
        at = trace.step == step
        stats.append({
            "step": step,
            "sigma": sigma,
            "k_bar": float(np.nanmean(k_wins)) if np.isfinite(k_wins).any() else float("nan"),
            "k_bar_paper": float(k_paper.mean()),
            "global_win_rate": trace.winner_global[at].double().mean().item(),
        })
    return stats
