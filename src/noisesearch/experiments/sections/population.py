"""Ma et al.'s scaling study in kind (arXiv 2501.09732, Figs. 1, 3–6 and 13): population metrics against total NFE
per image (denoising + search), one panel per metric, for runs that kept image features.

Lines: more denoising steps alone (naive runs, at the preset's steps and at their own), random search (best-of-N)
with each verifier (reward column), and every other search at its N, the budget growing with its iterations; each
search line starts at the naive point, the denoising-only NFE. Bands are 95 % bootstrap intervals over the images.
Fig. 13's diversity: recall against IS per verifier for random search. A table lists every run by NFE."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisesearch.experiments.document import Block, Figure, Heading, Paragraph, Table
from noisesearch.experiments.population import DRAWS, LEVEL, LOWER_IS_BETTER, METRICS, Interval, Population, population
from noisesearch.experiments.presets import RunSpec
from noisesearch.experiments.runs import run_label
from noisesearch.experiments.sections.families import budget_of
from noisesearch.experiments.store import Run
from noisesearch.metrics.statistics import bootstrap
from noisesearch.plotting import label_axes, pyplot, save_figure

STEPS_LINE = "more denoising steps (naive)"
RANDOM = "random search (best_of_n)"
Point = tuple[float, str]  # (NFE per image, run label)


def line_of(record: dict[str, Any]) -> str:
    """The line a run belongs to: naive at any steps, random search, or an algorithm at its N (its other
    parameters are what grows its budget)."""
    if record["algorithm"] == "naive":
        return STEPS_LINE
    n = record["params"].get("N")
    if record["algorithm"] == "best_of_n":
        return RANDOM
    return record["algorithm"] if n is None else f"{record['algorithm']} (N = {n})"


def verifier_interval(values: np.ndarray) -> Interval:
    """Mean verifier score with its percentile bootstrap interval over the images."""
    scores = torch.from_numpy(values)
    return Interval(float(values.mean()), *bootstrap(lambda i: float(scores[i].mean()), len(values), DRAWS, 0, LEVEL))


def lines(run: Run, metrics: Population) -> dict[str, dict[str, list[Point]]]:
    """Per column, per line: its runs with features, by NFE per image; each search line begins at the naive run
    (the preset's steps) where that has features."""
    nfe: dict[tuple[str, str], list[int]] = defaultdict(list)
    found: dict[str, dict[str, set[Point]]] = defaultdict(lambda: defaultdict(set))
    for r in run.records:
        nfe[(run_label(r), r["column"])].append(r["nfe"])
    for r in run.records:
        key = (run_label(r), r["column"])
        if key in metrics.metrics:
            found[r["column"]][line_of(r)].add((float(np.mean(nfe[key])), key[0]))
    shown = {}
    for column, by_line in found.items():
        base = {p for p in by_line.get(STEPS_LINE, ()) if p[1] == RunSpec("naive", {}).label}
        shown[column] = {name: sorted(points | (base if name != STEPS_LINE else set()))
                         for name, points in by_line.items()}
    return shown


def metric_value(run: Run, metrics: Population, key: tuple[str, str], metric: str) -> Interval:
    if metric == "reward":
        memo = run.memo.setdefault("verifier", {})
        if key not in memo:
            memo[key] = verifier_interval(np.array([r["reward_value"] for r in run.records
                                                    if (run_label(r), r["column"]) == key]))
        return memo[key]
    return metrics.metrics[key][metric]


def panel_title(metrics: Population, metric: str, column: str) -> str:
    if metric == "reward":
        return f"mean verifier score ({column}) ↑"
    return f"{metrics.title(metric)} {'↓' if LOWER_IS_BETTER[metric] else '↑'}"


def draw(run: Run, metrics: Population, curves: dict[str, list[Point]], column: str, title: str, out: Path,
         name: str) -> Figure:
    """One panel per metric (and the verifier's mean score), a line with its band per entry of `curves`."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plt = pyplot()
    panels = (*METRICS, "reward")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, metric in zip(axes.flat, panels, strict=True):
        for curve, points in sorted(curves.items()):
            values = [metric_value(run, metrics, (label, column_of(curve, column)), metric) for _, label in points]
            x = np.array([p[0] for p in points])
            y, low, high = (np.array([getattr(v, f) for v in values]) for f in ("value", "low", "high"))
            steps = curve == STEPS_LINE
            ax.plot(x, y, marker="s" if steps else "o", linestyle="--" if steps else "-", color="k" if steps else None,
                    linewidth=2.4 if steps else 1.4, label=curve)
            ax.fill_between(x, low, high, alpha=0.15, color=ax.lines[-1].get_color())
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        label_axes(ax, "total NFE per image (log)", panel_title(metrics, metric, column), panel_title(metrics, metric,
                                                                                                      column))
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    return Figure(save_figure(fig, out, name), title)


def column_of(name: str, column: str) -> str:
    """The reward column of a curve: "random search [COLUMN]" across verifiers, else the figure's column."""
    return name[name.index("[") + 1:-1] if name.startswith("random search [") else column


def budget_table(run: Run, metrics: Population, curves: dict[str, dict[str, list[Point]]]) -> Table:
    """Every run with features, per column by NFE per image: its budget (a target of the preset within 5 %),
    the verifier's mean score, the held-out evaluator and every population metric with its interval."""
    budgets = run.preset.target_nfes if run.preset is not None else ()
    evaluator = defaultdict(list)
    for r in run.records:
        if r["evaluator"] is not None:
            evaluator[(run_label(r), r["column"])].append(r["evaluator"])
    rows = []
    for column, by_line in curves.items():
        for nfe, label in sorted({p for points in by_line.values() for p in points}):
            key = (label, column)
            budget = budget_of(nfe, budgets) if budgets else None
            rows.append([column, "—" if budget is None else str(budget), label, f"{nfe:.0f}", str(metrics.n[key]),
                         metric_value(run, metrics, key, "reward").shown(4),
                         f"{np.mean(evaluator[key]):.3f}" if evaluator[key] else "—",
                         *(metrics.shown(key, m) for m in METRICS)])
    return Table(["verifier", "budget", "run", "NFE / image", "images", "verifier score [95 %]", "evaluator",
                  *(metrics.title(m) for m in METRICS)], rows)


def diversity(run: Run, metrics: Population, curves: dict[str, dict[str, list[Point]]], out: Path) -> Figure:
    """Ma et al.'s Fig. 13 in kind: recall against IS along random search, one line per verifier, and the
    more-steps line (a verifier that hacks raises IS while recall falls)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    drawn = [(f"random search [{c}]", c, by_line[RANDOM]) for c, by_line in curves.items() if RANDOM in by_line]
    first = next(iter(curves))
    if STEPS_LINE in curves[first]:
        drawn.append((STEPS_LINE, first, curves[first][STEPS_LINE]))
    for name, column, points in drawn:
        values = [metrics.metrics[(label, column)] for _, label in points]
        ax.plot([v["is"].value for v in values], [v["recall"].value for v in values], marker="o",
                linestyle="--" if name == STEPS_LINE else "-", label=name)
        ax.annotate(f"{points[-1][0]:.0f} NFE", (values[-1]["is"].value, values[-1]["recall"].value), fontsize=7)
    label_axes(ax, f"{metrics.title('is')} ↑", f"{metrics.title('recall')} ↑",
               "Diversity as search scales: recall against IS", legend=True)
    return Figure(save_figure(fig, out, "population_diversity.png"), "recall against IS per verifier (Ma Fig. 13)")


def applies(run: Run) -> bool:
    metrics = population(run)
    return metrics is not None and any(len({p[0] for p in points}) >= 2 for by_line in lines(run, metrics).values()
                                       for points in by_line.values())


def blocks(run: Run, out: Path) -> list[Block]:
    metrics = population(run)
    curves = lines(run, metrics)
    shown: list[Block] = [
        Heading(2, f"Population metrics against total NFE ({metrics.title('fid')}, Ma et al.'s scaling study)"),
        Paragraph(f"{', '.join(metrics.title(m) for m in METRICS)} of each run's images against the "
                  f"`{metrics.reference}` reference on the `{metrics.extractor}` extractor's features (not "
                  "Inception's: the numbers do not compare with ImageNet FIDs), and the verifier's mean score, against "
                  "total NFE per image (denoising + search). The dashed black line spends the NFE on more denoising "
                  f"steps alone; search lines start at the naive run. Bands and brackets: {LEVEL:.0%} bootstrap "
                  f"intervals over the images ({DRAWS} resamples; the resamples' spread about their median, placed "
                  "about the value, because a resample repeats images, which FID reads as lost diversity). FID is "
                  "biased upward at small n: compare lines at equal image counts, and read KID where they differ."),
    ]
    across = {f"random search [{c}]": by_line[RANDOM] for c, by_line in curves.items() if RANDOM in by_line}
    first = next(iter(curves))
    if across and STEPS_LINE in curves[first]:
        across[STEPS_LINE] = curves[first][STEPS_LINE]
    if len(across) > 1:
        shown.append(draw(run, metrics, across, first, f"Random search with each verifier against more denoising "
                          f"steps ({metrics.title('fid')})", out, "population_verifiers.png"))
    for column, by_line in curves.items():
        shown.append(draw(run, metrics, by_line, column, f"Every search with the {column} verifier "
                          f"({metrics.title('fid')})", out, f"population_{column}.png"))
    if across:
        shown.append(diversity(run, metrics, curves, out))
    shown += [Heading(3, "Every run by NFE per image"), budget_table(run, metrics, curves)]
    return shown
