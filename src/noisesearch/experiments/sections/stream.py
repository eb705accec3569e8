"""Runs over a stream of labels in order (as a user serves them), for runs with a cell that learns across labels:
their running mean reward against cumulative NFE with each calibration's NFE counted up front, and the targets of
online adaptive search against ε-greedy (4, 20): after a warm-up, the gain kept at a fraction of its NFE per image,
and over the whole stream its total NFE."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from noisesearch.experiments.document import Block, Figure, Heading, Paragraph, Table
from noisesearch.experiments.presets import RunSpec
from noisesearch.experiments.runs import family, gain_kept, is_reference, registered_class, streams
from noisesearch.experiments.store import Run
from noisesearch.plotting import label_axes, pyplot, save_figure

WARMUP = 64  # labels the learner may spend warming up: the targets after it are over labels WARMUP + 1 onwards
GAIN_KEPT, NFE_RATIO, TOTAL_RATIO = 0.95, 0.35, 0.40  # targets: gain kept after warm-up, NFE per image, total NFE


def learns_across_labels(algorithm: str) -> bool:
    cls = registered_class(algorithm)
    return cls is not None and cls.learns_across_conditions


def calibration_nfe(record: dict[str, Any], run: Run) -> int:
    """The NFE that calibrated the schedule a record's run uses (0 for runs without a calibrated schedule)."""
    source = RunSpec.of(record).calibrated_column(record["column"])
    schedule = None if source is None else run.schedule(source)
    return 0 if schedule is None else int(schedule["info"]["calibration_nfe"])


def applies(run: Run) -> bool:
    return any(learns_across_labels(r["algorithm"]) for r in run.records)


def blocks(run: Run, out: Path) -> list[Block]:
    """The targets table, the stream plot and the online runs' arms."""
    by_column = streams(run.records)
    spent = {(column, label): calibration_nfe(rs[0], run) for column, runs in by_column.items()
             for label, rs in runs.items()}
    rows = []
    for column, runs in by_column.items():
        naive = next((rs for rs in runs.values() if family(rs[0]["algorithm"]) == "baseline"), None)
        reference = next((rs for rs in runs.values() if is_reference(rs[0]["algorithm"], rs[0]["params"])), None)
        for label, rs in runs.items():
            if rs is naive or rs is reference:
                continue
            rows.append([column, label, *targets(rs, naive, reference, spent[(column, label)])])
    figure = plot_streams(by_column, spent, out)
    return [
        Heading(2, "A stream of labels: learning while serving"),
        Paragraph(f"Each run serves the column's labels in order. Calibration NFE (of a run's calibrated schedule or "
                  f"prior) is spent before the first image and counted in its total. After warm-up = labels "
                  f"{WARMUP + 1}+: gain kept = (run − naive) ÷ (ε-greedy (4, 20) − naive) on those labels, ± a "
                  f"paired bootstrap standard error over labels, and NFE ratio = the run's NFE per image there ÷ "
                  f"ε-greedy's. Total NFE ratio: all labels' NFE plus calibration, ÷ ε-greedy's. Targets: gain kept "
                  f"≥ {100 * GAIN_KEPT:.0f} % at NFE ratio ≤ {NFE_RATIO:.2f} after warm-up, and total NFE ratio ≤ "
                  f"{TOTAL_RATIO:.2f}."),
        Table(["column", "run", "labels", "calibration NFE", "reward after warm-up", "gain kept after warm-up",
               "NFE ratio after warm-up", "total NFE ratio", "targets met"], rows),
        Figure(figure, "running mean reward against cumulative NFE, calibration included"),
        *arm_blocks(by_column),
    ]


def arm_blocks(by_column: dict[str, dict[str, list[dict[str, Any]]]]) -> list[Block]:
    """A table of the arms the online runs chose (records with an "arm"), in the warm-up and after it."""
    rows = []
    for column, runs in by_column.items():
        for label, rs in runs.items():
            chosen: dict[str, list[list[float]]] = defaultdict(lambda: [[], []])
            for r in rs:
                if "arm" in r:
                    chosen[r["arm"]][r["label_index"] >= WARMUP].append(r["reward_value"])
            rows += [[column, label, arm, str(len(early)), str(len(late)),
                      f"{np.mean(late):.4f}" if late else "—"] for arm, (early, late) in sorted(chosen.items())]
    if not rows:
        return []
    return [Table(["column", "run", "arm", f"labels 1–{WARMUP}", f"labels {WARMUP + 1}+",
                   f"mean reward, labels {WARMUP + 1}+"], rows)]


def targets(rs: list[dict[str, Any]], naive: list[dict[str, Any]] | None, reference: list[dict[str, Any]] | None,
            spent: int) -> list[str]:
    """The stream table's cells of one run (its calibration cost `spent` NFE) against the column's naive and
    ε-greedy (4, 20) streams."""
    after = [r for r in rs if r["label_index"] >= WARMUP]
    mean = np.mean([r["reward_value"] for r in after]) if after else float("nan")
    cells = [str(len(rs)), str(spent), f"{mean:.4f}" if after else "—"]
    if naive is None or reference is None or not after:
        return cells + ["—", "—", "—", "—"]
    by_label = {name: {r["label_index"]: r["reward_value"] for r in stream}
                for name, stream in (("run", after), ("naive", naive), ("reference", reference))}
    shared = sorted(set.intersection(*(set(values) for values in by_label.values())))
    values = {name: np.array([rewards[k] for k in shared]) for name, rewards in by_label.items()}
    kept, se = gain_kept(values["run"], values["naive"], values["reference"])
    ref_after = [r for r in reference if r["label_index"] >= WARMUP]
    ratio = np.mean([r["nfe"] for r in after]) / np.mean([r["nfe"] for r in ref_after])
    total = (spent + sum(r["nfe"] for r in rs)) / sum(r["nfe"] for r in reference)
    met = kept >= GAIN_KEPT and ratio <= NFE_RATIO and total <= TOTAL_RATIO
    return cells + [f"{100 * kept:.1f} % ± {100 * se:.1f}", f"{ratio:.3f}", f"{total:.3f}", "yes" if met else "no"]


def plot_streams(by_column: dict[str, dict[str, list[dict[str, Any]]]], spent: dict[tuple[str, str], int],
                 out: Path) -> Path:
    fig, axes = pyplot().subplots(1, len(by_column), figsize=(5.5 * len(by_column), 4.2), squeeze=False)
    for ax, (column, runs) in zip(axes[0], by_column.items(), strict=True):
        for label, rs in runs.items():
            nfe = spent[(column, label)] + np.cumsum([r["nfe"] for r in rs])
            running = np.cumsum([r["reward_value"] for r in rs]) / np.arange(1, len(rs) + 1)
            ax.plot(nfe, running, label=label, lw=1.4)
        ax.set_xscale("log")
        label_axes(ax, "cumulative NFE (calibration included)", "running mean reward", column)
    axes[0][0].legend(fontsize=7)
    return save_figure(fig, out, "stream.png")
