"""Adaptive ε-greedy, its online learner and the σ window against ε-greedy (4, 20) and every other method at
matched NFE, the calibration cost, schedule transfer and the calibrated schedules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noisesearch.experiments.document import Block, Figure, Heading, Paragraph, Table
from noisesearch.experiments.presets import RunSpec
from noisesearch.experiments.runs import Stats, family, is_reference, summarize
from noisesearch.experiments.store import Run

ADAPTIVE_FAMILIES = ("adaptive", "online", "window")
NFE_TOLERANCE = 1.02  # "matched" NFE: at most 2 % more than the adaptive run's


def applies(run: Run) -> bool:
    return any(family(r["algorithm"]) in ADAPTIVE_FAMILIES for r in run.records)


def blocks(run: Run, out: Path) -> list[Block]:
    """Tables of the adaptive runs, then those of the run's calibrated schedules."""
    records, stats = run.records, summarize(run.records)
    runs = {RunSpec.of(r).label: RunSpec.of(r) for r in records}
    rows = []
    for column in dict.fromkeys(r["column"] for r in records):
        here = {label: stats[(label, column)] for label in runs if (label, column) in stats}
        naive = next((s for label, s in here.items() if family(runs[label].algorithm) == "baseline"), None)
        reference = next((s for label, s in here.items() if is_reference(runs[label].algorithm, runs[label].params)),
                         None)
        for label, s in here.items():
            if family(runs[label].algorithm) not in ADAPTIVE_FAMILIES:
                continue
            rows.append([column, label, f"{s['mean']:.4f} ± {s['se']:.3f}", f"{s['evaluator']:.3f}", f"{s['nfe']:.0f}",
                         *versus_reference(s, naive, reference), *versus_others(s, here, runs)])
    return [
        Heading(2, "Adaptive ε-greedy at matched compute"),
        Paragraph("Gain kept = (run − naive) ÷ (ε-greedy (4, 20) − naive), on the same labels and seeds; NFE ratio = "
                  "the run's NFE per image ÷ ε-greedy (4, 20)'s. The best other method is the highest mean among "
                  f"non-adaptive runs of the column with at most {NFE_TOLERANCE:.2f}× the run's NFE. A schedule "
                  "'calibrated:X' was calibrated on column X (transfer); 'calibrated' on the column itself."),
        Table(["column", "run", "reward (± se)", "evaluator", "NFE / image", "NFE ratio", "gain kept",
               "Δ vs ε-greedy (4, 20)", "best other at ≤ NFE", "its reward", "at least as good"], rows),
        *calibration_blocks(records, run.schedules(), out),
    ]


def versus_reference(s: dict[str, float], naive: dict[str, float] | None,
                     reference: dict[str, float] | None) -> list[str]:
    if reference is None:
        return ["—", "—", "—"]
    kept = "—"
    if naive is not None and reference["mean"] != naive["mean"]:
        kept = f"{100 * (s['mean'] - naive['mean']) / (reference['mean'] - naive['mean']):.1f} %"
    return [f"{s['nfe'] / reference['nfe']:.3f}", kept, f"{s['mean'] - reference['mean']:+.4f}"]


def versus_others(s: dict[str, float], here: Stats, runs: dict[str, RunSpec]) -> list[str]:
    others = [(o["mean"], label) for label, o in here.items()
              if family(runs[label].algorithm) not in ADAPTIVE_FAMILIES and o["nfe"] <= s["nfe"] * NFE_TOLERANCE]
    if not others:
        return ["—", "—", "—"]
    mean, label = max(others)
    return [label, f"{mean:.4f}", "yes" if s["mean"] >= mean else "no"]


def calibration_blocks(records: list[dict[str, Any]], schedules: dict[str, dict[str, Any]], out: Path
                       ) -> list[Block]:
    """Calibration cost per schedule (NFE of calibration ÷ images it served), the schedules themselves and the
    R(σ) of those calibrated by the reliability method."""
    if not schedules:
        return []
    served = dict.fromkeys(schedules, 0)
    for r in records:
        source = RunSpec.of(r).calibrated_column(r["column"])
        if source is not None:
            served[source] = served.get(source, 0) + 1
    cost_rows = []
    for name, data in schedules.items():
        info = data["info"]
        per_image = f"{info['calibration_nfe'] / served[name]:.1f}" if served[name] else "—"
        cost_rows.append([name, info["method"], str(info["conditions"]), str(info["calibration_nfe"]),
                          str(served[name]), per_image])
    names = list(schedules)
    first = schedules[names[0]]
    step_rows = []
    for t, sigma in enumerate(first["sigmas"]):
        row = [f"{sigma:.3f}"]
        for name in names:
            data = schedules[name]
            row += [str(data["K"][t]), f"{data['eps'][t]:.2f}", f"{data['gains'][t][0]:.4f}" if data["gains"] else "—"]
        step_rows.append(row)
    header = ["σ"] + [f"{name}: {what}" for name in names for what in ("K_t", "ε_t", "gain of k=1")]
    return [
        Heading(3, "Calibration cost"),
        Paragraph("Each schedule is calibrated once on its own conditions (sample seeds disjoint from every "
                  "evaluation seed) and serves every adaptive image that uses it."),
        Table(["schedule", "method", "conditions", "calibration NFE", "images served", "NFE per served image"],
              cost_rows),
        *candidate_blocks(schedules),
        Heading(3, "Calibrated schedules"),
        Table(header, step_rows),
        *reliability_blocks(schedules, out),
    ]


def reliability_blocks(schedules: dict[str, dict[str, Any]], out: Path) -> list[Block]:
    """R(σ) with its bootstrap intervals, for the schedules calibrated from it."""
    from noisesearch.adaptive.reliability import reliability_plot

    curves = {name: data["info"]["reliability"] for name, data in schedules.items() if "reliability" in data["info"]}
    if not curves:
        return []
    out.mkdir(parents=True, exist_ok=True)
    return [
        Heading(3, "R(σ) of the reliability-calibrated schedules"),
        Paragraph("Spearman correlation between the reward of a step's x0 prediction and the final reward across "
                  "the probe's candidates, mean over calibration conditions with 90 % bootstrap intervals; the "
                  "schedule exploits (ε_t = 1 − R⁺, iterations by R⁺ × spread) where it is high."),
        Figure(reliability_plot(curves, out / "reliability.png"), "R(σ) per schedule"),
    ]


def candidate_blocks(schedules: dict[str, dict[str, Any]]) -> list[Block]:
    """The moves and beam widths each calibration validated, and the one it kept."""
    rows = []
    for name, data in schedules.items():
        info = data["info"]
        for c in info.get("candidates", []):
            kept = all(c[key] == info[key] for key in ("N", "K", "eps", "lambda_", "B"))
            rows.append([name, str(c["N"]), str(c["K"]), f"{c['eps']:g}", f"{c['lambda_']:g}", str(c["B"]),
                         f"{c['expected_gain']:.4f}",
                         f"{c['validation_reward']:.4f}" if "validation_reward" in c else "not validated",
                         "kept" if kept else ""])
    if not rows:
        return []
    return [
        Heading(3, "Moves and beams validated"),
        Paragraph("Each candidate (move N, ε, λ with K·N/N' probe iterations; B incumbents) ran adaptive ε-greedy at "
                  "the calibration budget on the validation conditions (the calibration's, and more drawn the same "
                  "way where the schedule's info gives a larger validation_conditions); the best mean reward was "
                  "kept. Expected gain: the sum of the calibrated per-step gains its K_t buy; a calibration without "
                  "validation runs kept the largest."),
        Table(["schedule", "N", "K", "ε", "λ", "B", "expected gain", "validation reward", ""], rows),
    ]
