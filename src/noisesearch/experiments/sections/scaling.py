"""Reward against NFE per image (log axis): one plot per column, one line per algorithm (and schedule source)
with at least two budgets."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from noisesearch.experiments.document import Block, Figure, Heading
from noisesearch.experiments.runs import run_label, summarize
from noisesearch.experiments.store import Run
from noisesearch.plotting import label_axes, pyplot, save_figure

Series = dict[str, list[tuple[float, float, float]]]  # line → (NFE per image, mean, standard error) per run


def series_name(record: dict[str, Any]) -> str:
    """The line a result belongs to in reward-against-NFE plots: its algorithm, and a schedule's source."""
    named = record["params"].get("search_schedule")
    return f"{record['algorithm']} [{named}]" if isinstance(named, str) else record["algorithm"]


def plotted(records: list[dict[str, Any]]) -> dict[str, Series]:
    """Per column with a line of at least two budgets: its lines."""
    stats = summarize(records)
    columns = {}
    for column in dict.fromkeys(r["column"] for r in records):
        series: Series = defaultdict(list)
        for r in {(series_name(r), run_label(r)) for r in records if r["column"] == column}:
            s = stats[(r[1], column)]
            series[r[0]].append((s["nfe"], s["mean"], s["se"]))
        if any(len({p[0] for p in v}) >= 2 for v in series.values()):
            columns[column] = series
    return columns


def applies(run: Run) -> bool:
    return bool(plotted(run.records))


def blocks(run: Run, out: Path) -> list[Block]:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plt = pyplot()
    shown: list[Block] = [Heading(2, "Reward against NFE")]
    for column, series in plotted(run.records).items():
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for algorithm, points in sorted(series.items()):
            nfe, mean, se = (np.array(p) for p in zip(*sorted(points), strict=True))
            ax.errorbar(nfe, mean, yerr=se, marker="o", capsize=3, label=algorithm)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        label_axes(ax, "NFE per image (log)", f"{column} reward (mean ± se)", f"Reward against compute: {column}",
                   legend=True)
        shown.append(Figure(save_figure(fig, out, f"scaling_{column}.png"), f"{column} reward against NFE per image"))
    return shown
