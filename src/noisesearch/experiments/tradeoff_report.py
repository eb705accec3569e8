"""The calibration trade-off report: several bench runs of the same labels that differ in how their adaptive
schedules were calibrated, as gain kept at matched NFE against the NFE each calibration spent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.document import Block, Figure, Heading, Paragraph, Table, write_document
from noisesearch.experiments.presets import RunSpec
from noisesearch.experiments.runs import family, gain_kept, is_reference, streams
from noisesearch.experiments.sections.stream import GAIN_KEPT
from noisesearch.experiments.store import load_run
from noisesearch.plotting import label_axes, pyplot, save_figure

CHEAP = 21_000  # calibration NFE per schedule the cheaper calibration must stay within


def recipe(info: dict[str, Any]) -> str:
    """How a schedule was calibrated, from its info: conditions, moves probed, validation, and what was kept."""
    candidates = info.get("candidates", [])
    moves = len({(c["N"], c["eps"], c["lambda_"]) for c in candidates}) or 1
    validated = info.get("validation_conditions")
    check = "no validation" if validated == 0 or not candidates else f"validated on {validated}"
    return (f"{info['conditions']} conditions, {moves} move{'s' if moves > 1 else ''}, {check}; kept N={info['N']} "
            f"ε={info['eps']:g} λ={info['lambda_']:g} B={info.get('B', 1)}")


def tradeoff_points(run_dir: Path) -> list[dict[str, Any]]:
    """Per column of a run: each calibrated adaptive run's gain kept over all labels (± paired bootstrap se) and
    NFE ratio against ε-greedy (4, 20), with its schedule's calibration NFE and recipe."""
    run = load_run(run_dir)
    points = []
    for column, runs in streams(run.records).items():
        naive = next((rs for rs in runs.values() if family(rs[0]["algorithm"]) == "baseline"), None)
        reference = next((rs for rs in runs.values() if is_reference(rs[0]["algorithm"], rs[0]["params"])), None)
        for label, rs in runs.items():
            source = RunSpec.of(rs[0]).calibrated_column(column)
            schedule = None if source is None else run.schedule(source)
            if schedule is None or naive is None or reference is None:
                continue
            info = schedule["info"]
            values = [np.array([r["reward_value"] for r in stream]) for stream in (rs, naive, reference)]
            if len({len(v) for v in values}) != 1:
                raise NoiseSearchError(f"{run_dir}: the runs of column {column} do not share their labels")
            kept, se = gain_kept(*values)
            points.append({"run_dir": str(run_dir), "column": column, "run": label, "labels": len(rs),
                           "calibration_nfe": int(info["calibration_nfe"]), "recipe": recipe(info),
                           "gain_kept": kept, "se": se,
                           "nfe_ratio": np.mean([r["nfe"] for r in rs]) / np.mean([r["nfe"] for r in reference]),
                           "git_commit": run.environment.get("git_commit"),
                           "git_dirty": run.environment.get("git_dirty")})
    return points


def plot_tradeoff(points: list[dict[str, Any]], out: Path) -> Path:
    columns = list(dict.fromkeys(p["column"] for p in points))
    fig, axes = pyplot().subplots(1, len(columns), figsize=(5 * len(columns), 4), squeeze=False)
    for ax, column in zip(axes[0], columns, strict=True):
        here = sorted((p for p in points if p["column"] == column), key=lambda p: p["calibration_nfe"])
        ax.errorbar([p["calibration_nfe"] for p in here], [100 * p["gain_kept"] for p in here],
                    yerr=[100 * p["se"] for p in here], marker="o", capsize=3)
        ax.axhline(100 * GAIN_KEPT, color="grey", ls="--", lw=1)
        ax.axvline(CHEAP, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        label_axes(ax, "calibration NFE per schedule", "gain kept at matched NFE (%)", column)
    return save_figure(fig, out, "tradeoff.png")


def write_tradeoff_report(run_dirs: list[Path], out: Path) -> tuple[Path, Path]:
    """report.md and report.html (with tradeoff.png) in `out` for the calibrated adaptive runs of `run_dirs`."""
    points = [p for d in run_dirs for p in tradeoff_points(Path(d))]
    if not points:
        raise NoiseSearchError("none of the run directories has an adaptive run of a calibrated schedule beside "
                               "naive and ε-greedy (4, 20)")
    out.mkdir(parents=True, exist_ok=True)
    rows = [[p["column"], p["recipe"], f"{p['calibration_nfe']:,}", str(p["labels"]),
             f"{100 * p['gain_kept']:.1f} % ± {100 * p['se']:.1f}", f"{p['nfe_ratio']:.3f}",
             f"{p['run_dir']} ({(p['git_commit'] or '?')[:7]}{', dirty' if p['git_dirty'] else ''})"]
            for p in sorted(points, key=lambda p: (p["column"], p["calibration_nfe"]))]
    blocks: list[Block] = [
        Heading(1, "Calibration cost against schedule quality"),
        Paragraph(f"Each point: adaptive ε-greedy with a schedule calibrated as its recipe says, on the evaluation "
                  f"labels of its run (none of them used to calibrate). Gain kept = (run − naive) ÷ (ε-greedy (4, 20) "
                  f"− naive) over the same labels, ± a paired bootstrap standard error; NFE ratio = its NFE per image "
                  f"÷ ε-greedy's. Dashed: {100 * GAIN_KEPT:.0f} % kept; dotted: {CHEAP:,} calibration NFE."),
        Table(["column", "calibration", "calibration NFE", "labels", "gain kept", "NFE ratio", "run (commit)"], rows),
        Figure(plot_tradeoff(points, out), "gain kept against calibration NFE"),
    ]
    return write_document(blocks, out)
