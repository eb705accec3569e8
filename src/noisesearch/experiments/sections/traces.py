"""When exploitation pays (the paper's Fig. 2): k̄(σ) of both definitions and the global-win rate of the reference
ε-greedy runs' traces, with bootstrap intervals, a table of the k̄ figures and the incumbent over iterations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisesearch.experiments.cells import preset_cells
from noisesearch.experiments.document import Block, Figure, Heading, Paragraph, Table
from noisesearch.experiments.runs import family
from noisesearch.experiments.store import Run
from noisesearch.plotting import label_axes, pyplot, save_figure
from noisesearch.search.tracing import bootstrap_interval, kbar_per_condition, step_statistics
from noisesearch.types import TRACE_FIELDS, Trace

VARIANTS = {True: "elitist", False: "plain (the paper's Algorithm 1)"}  # eps_greedy's elitism parameter
KBAR_PANELS = {"wins": "k̄, mean k − 1 of the iterations a global draw won",
               "paper": "k̄, Σ (k − 1)·I_k / (K − 1) (the paper's)"}


def trace_cells(run: Run) -> list:
    """Per column and variant (elitist or not), the reference family's cells (without a schedule) of the largest
    K: the traces the figures use."""
    if run.preset is None:
        return []
    chosen = {}
    for cell in preset_cells(run.preset):
        params = cell.run.params
        if family(cell.run.algorithm) != "reference" or params.get("search_schedule"):
            continue
        key = (cell.column.name, params.get("elitism", True))
        best = chosen.get(key)
        if best is None or params.get("K", 20) > best[0]:
            chosen[key] = (params.get("K", 20), cell.run)
    return [cell for cell in preset_cells(run.preset)
            if chosen.get((cell.column.name, cell.run.params.get("elitism", True)), (0, None))[1] == cell.run]


def trace_files(run: Run) -> Iterator[tuple[Any, Path]]:
    for cell in trace_cells(run):
        for path in run.cell_files("traces", cell.slug):
            yield cell, path


def load_traces(run: Run) -> dict[str, dict[str, Trace]]:
    """The traces per column and variant (conditions renumbered by label index and repeat)."""
    traces: dict[tuple[str, str], list[dict[str, np.ndarray]]] = defaultdict(list)
    for cell, path in trace_files(run):
        variant = VARIANTS[cell.run.params.get("elitism", True)]
        with np.load(path) as data:
            rows = len(data["condition"])
            traces[cell.column.name, variant].append(
                {name: data[name] if name in data else np.full(rows, np.nan, np.float32) for name in TRACE_FIELDS})
    merged: dict[str, dict[str, Trace]] = defaultdict(dict)
    for (column, variant), parts in traces.items():
        for k, part in enumerate(parts):  # keep conditions of different cells apart
            part["condition"] = part["condition"] + 100_000 * k
        merged[column][variant] = Trace(**{name: torch.from_numpy(np.concatenate([p[name] for p in parts]))
                                           for name in TRACE_FIELDS})
    return dict(merged)


def kbar_table(variants: dict[str, Trace]) -> Table:
    """k̄ per step of both definitions and variants, with 90 % bootstrap intervals over conditions."""
    series = {(variant, d): kbar_per_condition(trace, d) for variant, trace in variants.items() for d in KBAR_PANELS}
    header = ["σ_t"] + [f"{variant.split(' ')[0]}: {d}" for variant, d in series]
    rows = []
    for i, (_, sigma, _) in enumerate(next(iter(series.values()))):
        cells = []
        for per_step in series.values():
            mean, lo, hi = bootstrap_interval(per_step[i][2]) if i < len(per_step) else (float("nan"),) * 3
            cells.append("—" if mean != mean else f"{mean:.2f} [{lo:.2f}, {hi:.2f}]")
        rows.append([f"{sigma:.3g}", *cells])
    return Table(header, rows)


def applies(run: Run) -> bool:
    return next(trace_files(run), None) is not None


def blocks(run: Run, out: Path) -> list[Block]:
    """k̄(σ) of both definitions for each variant with bootstrap intervals, the global-win rate per step, a table
    of the k̄ figures, and the elitist incumbent over iterations, per column."""
    plt = pyplot()
    shown: list[Block] = [Heading(2, "When does exploitation pay? (ε-greedy traces, the paper's Fig. 2)")]
    for column, variants in load_traces(run).items():
        fig, axes = plt.subplots(1, 3, figsize=(15, 3.9))
        for n, (variant, trace) in enumerate(variants.items()):
            for ax, definition in zip(axes[:2], KBAR_PANELS, strict=True):
                per_step = kbar_per_condition(trace, definition)
                sigma = [s for _, s, _ in per_step]
                mean, lo, hi = np.array([bootstrap_interval(v) for _, _, v in per_step]).T
                ax.errorbar(sigma, mean, yerr=[mean - lo, hi - mean], marker="o", capsize=2, color=f"C{n}",
                            label=variant)
            stats = step_statistics(trace)
            axes[2].plot([s["sigma"] for s in stats], [s["global_win_rate"] for s in stats], marker="o",
                         color=f"C{n}", label=variant)
        for ax, (definition, ylabel) in zip(axes[:2], KBAR_PANELS.items(), strict=True):
            label_axes(ax, "σ_t (log)", ylabel, f"k̄(σ) ({definition}), ε-greedy, {column}", legend=True)
        label_axes(axes[2], "σ_t (log)", "fraction of iterations won by a global draw", "global-win rate",
                   legend=True)
        for ax in axes:
            ax.set_xscale("log")
            ax.invert_xaxis()
        path = save_figure(fig, out, f"kbar_{column}.png")
        shown.append(Figure(path, f"k̄(σ) (both definitions, 90 % bootstrap intervals over conditions) and "
                                  f"global-win rate, {column}"))
        shown.append(Paragraph(f"k̄ per step, {column}: mean over conditions [90 % bootstrap interval]; 'wins' is "
                               "the mean k − 1 of the iterations a global draw won, 'paper' Σ (k − 1)·I_k / (K − 1)."))
        shown.append(kbar_table(variants))

        trace = variants.get(VARIANTS[True], next(iter(variants.values())))
        steps = sorted({int(s) for s in trace.step.tolist()})
        picks = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for step in picks:
            at = trace.step == step
            iters = sorted({int(k) for k in trace.iteration[at].tolist()})
            mean = [trace.incumbent_score[at & (trace.iteration == k)].double().mean().item() for k in iters]
            ax.plot(iters, mean, marker=".", label=f"σ = {trace.sigma[at][0].item():.3g}")
        label_axes(ax, "iteration k", "incumbent score (x0 prediction)", f"Incumbent over iterations, {column}",
                   legend=True)
        shown.append(Figure(save_figure(fig, out, f"incumbent_{column}.png"),
                            f"incumbent reward over iterations, {column}"))
    return shown
