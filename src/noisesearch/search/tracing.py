"""Recording per-step search traces and the statistics of the paper's Fig. 2 over them (k̄(σ), global-win rate)."""

from __future__ import annotations

import torch

from noisesearch.types import TRACE_FIELDS, Trace


class TraceRecorder:
    """Collects one row per condition for every iteration of a per-step search."""

    def __init__(self) -> None:
        self._rows: dict[str, list[torch.Tensor]] = {name: [] for name in TRACE_FIELDS}

    def record(self, conditions: torch.Tensor, step: int, sigma: float, iteration: int, winner_score: torch.Tensor,
               incumbent_score: torch.Tensor, winner_global: torch.Tensor, changed: torch.Tensor,
               mean_score: torch.Tensor) -> None:
        n = len(conditions)
        values = {
            "condition": conditions, "step": torch.full((n,), step), "sigma": torch.full((n,), float(sigma)),
            "iteration": torch.full((n,), iteration), "winner_score": winner_score,
            "incumbent_score": incumbent_score, "winner_global": winner_global, "changed": changed,
            "mean_score": mean_score,
        }
        for name, value in values.items():
            self._rows[name].append(value.detach().clone())

    def build(self) -> Trace:
        empty = {"winner_global": torch.bool, "changed": torch.bool, "sigma": torch.float32,
                 "winner_score": torch.float32, "incumbent_score": torch.float32, "mean_score": torch.float32}
        return Trace(**{name: torch.cat(rows) if rows else torch.zeros(0, dtype=empty.get(name, torch.long))
                        for name, rows in self._rows.items()})


def step_statistics(trace: Trace) -> list[dict[str, float]]:
    """Per searched step: sigma, k̄ (the paper's Fig. 2) and the global-win rate.

    k̄ of one condition at one step is the mean of (k − 1) over the iterations k at which a global
    draw became the incumbent; the table averages it over the conditions that had such an
    iteration (NaN if none had). The global-win rate is the fraction of iterations whose winning
    candidate was a global draw.
    """
    stats = []
    for step in torch.unique(trace.step).tolist():
        at = trace.step == step
        global_took = at & trace.winner_global & trace.changed
        per_condition = []
        for c in torch.unique(trace.condition[at]).tolist():
            ks = trace.iteration[global_took & (trace.condition == c)]
            if len(ks):
                per_condition.append((ks - 1).double().mean().item())
        stats.append({
            "step": step,
            "sigma": trace.sigma[at][0].item(),
            "k_bar": sum(per_condition) / len(per_condition) if per_condition else float("nan"),
            "global_win_rate": trace.winner_global[at].double().mean().item(),
        })
    return stats
