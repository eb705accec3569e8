"""Every family at matched NFE, for presets with budgets: per column and budget the best run, the runner-up
and the margin, the best of the new families against the best ε-greedy and adaptive runs, and the plots."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from noisesearch.experiments.document import Block, Figure, Heading, Paragraph, Table
from noisesearch.experiments.population import POPULATION_COLUMNS, Population, population, population_note
from noisesearch.experiments.runs import family, run_label, summarize
from noisesearch.experiments.store import Run
from noisesearch.plotting import label_axes, pyplot, save_figure
from noisesearch.search import algorithm_names

# The particle, value-decoding, evolutionary and budget-forcing families: drawn solid, and compared in the table.
NEW_FAMILIES = ("particles", "value_decoding", "evolutionary", "budget_forcing")
BUDGET_TOLERANCE = 0.05  # a run is at a budget when its NFE per image is within 5 % of it


def budget_of(nfe: float, budgets: tuple[int, ...]) -> int | None:
    """The budget nearest to `nfe` NFE per image, if within BUDGET_TOLERANCE of it."""
    nearest = min(budgets, key=lambda b: abs(nfe - b))
    return nearest if abs(nfe - nearest) <= BUDGET_TOLERANCE * nearest else None


def paired_difference(records: list[dict[str, Any]], a: str, b: str, column: str) -> tuple[float, float] | None:
    """Mean and standard error of run a's reward minus run b's over the (label, repeat) both have in `column`
    (the same labels and sample seeds); None where they share fewer than two."""
    values: dict[str, dict[tuple[int, int], float]] = {a: {}, b: {}}
    for r in records:
        if r["column"] == column and run_label(r) in values:
            values[run_label(r)][(r["label_index"], r["repeat"])] = r["reward_value"]
    shared = sorted(set(values[a]) & set(values[b]))
    if len(shared) < 2:
        return None
    diff = np.array([values[a][k] - values[b][k] for k in shared])
    return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(len(diff)))


def shown_difference(records: list[dict[str, Any]], a: str | None, b: str | None, column: str) -> str:
    d = None if a is None or b is None else paired_difference(records, a, b, column)
    return "—" if d is None else f"{d[0]:+.4f} ± {d[1]:.4f}"


def plot_families(records: list[dict[str, Any]], budgets: tuple[int, ...], out: Path) -> list[Block]:
    """Per column, reward against NFE per image with every algorithm (mean ± standard error over labels); the
    new families drawn solid, the others dashed, the budgets marked."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    plt = pyplot()
    stats = summarize(records)
    algorithms = sorted({r["algorithm"] for r in records})
    colors = plt.get_cmap("tab20")
    blocks = []
    for column in dict.fromkeys(r["column"] for r in records):
        series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for algorithm, label in sorted({(r["algorithm"], run_label(r)) for r in records if r["column"] == column}):
            s = stats[(label, column)]
            series[algorithm].append((s["nfe"], s["mean"], s["se"]))
        fig, ax = plt.subplots(figsize=(9, 5))
        for k, (algorithm, points) in enumerate(sorted(series.items(), key=lambda a: algorithms.index(a[0]))):
            nfe, mean, se = (np.array(p) for p in zip(*sorted(points), strict=True))
            new = family(algorithm) in NEW_FAMILIES
            color = colors((2 * k) % 20 + (2 * k) // 20 % 2)  # the dark shades of tab20 first, then the light
            ax.errorbar(nfe, mean, yerr=se, marker="osD^v<>ph*"[k % 10], capsize=3, color=color,
                        linestyle="-" if new else "--", linewidth=2.2 if new else 1.2, label=algorithm)
        for b in budgets:
            ax.axvline(b, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(sorted({min(p[0] for v in series.values() for p in v), *budgets})))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        label_axes(ax, "NFE per image (log)", f"{column} reward (mean ± se over labels)",
                   f"Every family at matched NFE: {column}")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
        path = save_figure(fig, out, f"families_{column}.png")
        blocks.append(Figure(path, f"{column}: reward against NFE per image, every family"))
    return blocks


def families_table(records: list[dict[str, Any]], budgets: tuple[int, ...], metrics: Population | None = None
                   ) -> Table:
    """Per (column, budget): the best run at that budget with its reward ± se and evaluator (and its FID,
    precision and recall with their bootstrap intervals, where the run kept features), the runner-up and
    the margin, and the best of the new families against the best ε-greedy and adaptive ε-greedy runs there
    (differences paired over labels, ± their standard error)."""
    stats = summarize(records)
    shown = () if metrics is None else POPULATION_COLUMNS
    families = {run_label(r): family(r["algorithm"]) for r in records}
    rows = []
    for column in dict.fromkeys(r["column"] for r in records):
        for b in budgets:
            here = sorted(((s["mean"], label) for (label, col), s in stats.items()
                           if col == column and budget_of(s["nfe"], budgets) == b), reverse=True)
            if not here:
                continue
            ranked = [label for _, label in here]
            best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
            new, eps, adaptive = (next((label for label in ranked if families[label] in names), None)
                                  for names in (NEW_FAMILIES, ("reference",), ("adaptive",)))
            s = stats[(best, column)]
            rows.append([column, str(b), best, f"{s['mean']:.4f} ± {s['se']:.4f}", f"{s['evaluator']:.3f}",
                         *(metrics.shown((best, column), m) for m in shown), f"{s['nfe']:.0f}", runner_up or "—",
                         shown_difference(records, best, runner_up, column),
                         new or "—", "—" if new is None else f"{stats[(new, column)]['mean']:.4f} ± "
                                                              f"{stats[(new, column)]['se']:.4f}",
                         shown_difference(records, new, eps, column),
                         shown_difference(records, new, adaptive, column)])
    return Table(["reward", "budget", "best method", "reward ± se", "evaluator",
                  *(metrics.title(m) for m in shown), "NFE / image", "runner-up", "best − runner-up",
                  "best new family", "its reward ± se", "new − ε-greedy", "new − adaptive"], rows)


def new_algorithms() -> list[str]:
    """The registered algorithms of the new families, family by family."""
    return [name for kind in NEW_FAMILIES for name in algorithm_names() if family(name) == kind]


def applies(run: Run) -> bool:
    return bool(run.preset is not None and run.preset.target_nfes and run.records)


def blocks(run: Run, out: Path) -> list[Block]:
    budgets = run.preset.target_nfes
    return [
        Heading(2, "Families at matched NFE"),
        Paragraph(f"Runs are grouped by the budget their metered NFE per image lies within {BUDGET_TOLERANCE:.0%} "
                  "of. Rewards: mean ± standard error over labels; evaluator: the held-out classifier's mean "
                  "probability of the label beside the search reward (verifier hacking shows as a gap). Differences "
                  "are paired over the labels and sample seeds both runs share (mean ± standard error). New families: "
                  f"{', '.join(new_algorithms())}; ε-greedy and adaptive: the best such run at the budget."),
        *population_note(population(run)),
        families_table(run.records, budgets, population(run)),
        *plot_families(run.records, budgets, out),
    ]
