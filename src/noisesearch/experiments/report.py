"""`noisesearch report RUN_DIR`: tables, plots and image grids from a bench run, never rerunning it.

Writes RUN_DIR/report/report.md and report.html (images inline) with the table in the paper's
layout (mean ± std, ± standard error, NFE per image, wall time, the held-out evaluator beside the
verifier), the paper's published figures for reference, image grids per method, reward against
NFE, k̄(σ) and the global-win rate of ε-greedy, and the incumbent's reward over iterations.

The report only reads the run's files (it writes nothing but its own output directory, and may run
while a bench is still writing): records are validated and de-duplicated as bench reads them, and a
torn last line is skipped, not cut off; the report says how many lines it left out.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.adaptive_report import adaptive_blocks
from noisesearch.experiments.cells import preset_cells
from noisesearch.experiments.presets import Preset, RunSpec
from noisesearch.experiments.store import RESULTS, SETTINGS, load_results
from noisesearch.experiments.stream_report import stream_blocks
from noisesearch.imaging import make_grid
from noisesearch.search.tracing import bootstrap_interval, kbar_per_condition, step_statistics
from noisesearch.types import TRACE_FIELDS, Trace

# Table 1 of Ramesh and Mardani (arXiv 2506.03164): EDM on ImageNet, 36 random class labels, mean ± std over
# 20 generations.
PAPER_TABLE1 = [
    ("Naive Sampling", "0.4965 ± 0.01", "0.3563 ± 0.07", "0.3778 ± 0.04", 18),
    ("Best of 4 Sampling", "0.5767 ± 0.01", "0.4220 ± 0.02", "0.5461 ± 0.00", 72),
    ("Beam Search (N = 4, B = 2)", "0.6334 ± 0.02", "0.4679 ± 0.05", "0.5536 ± 0.02", 144),
    ("MCTS (N = 4, S = 8)", "0.7575 ± 0.02", "0.5395 ± 0.04", "0.9666 ± 0.03", 3888),
    ("Zero-Order Search (N = 4, K = 20)", "0.6083 ± 0.01", "0.3751 ± 0.02", "0.6261 ± 0.04", 1440),
    ("ε-greedy (N = 4, K = 20)", "0.9813 ± 0.01", "0.7208 ± 0.03", "0.9885 ± 0.04", 1440),
]

Block = tuple  # ("h", level, text) | ("p", text) | ("table", header, rows) | ("img", path, alt)


@dataclass
class Run:
    directory: Path
    records: list[dict[str, Any]]
    preset: Preset | None
    seed: int | None
    environment: dict[str, Any]
    duplicates: int = 0  # duplicate lines of results.jsonl left out (the first record of a cell and label counts)
    torn: bool = False  # whether an unterminated last line was left out
    settings: dict[str, Any] | None = None  # run.json (None for runs written before it)


def read_json(path: Path, lines: bool = False) -> Any:
    """A JSON file of the run directory (lines: the last line of a JSON-lines file), or a one-line error."""
    try:
        text = path.read_text()
        return json.loads(text.splitlines()[-1] if lines else text) if text.strip() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NoiseSearchError(f"cannot read {path} ({err})") from None


def load_run(directory: Path) -> Run:
    """Read a bench run directory (results, preset, settings and environment) without running or writing
    anything."""
    directory = Path(directory)
    if not (directory / RESULTS).is_file():
        raise NoiseSearchError(f"{directory} holds no {RESULTS}: give a directory written by `noisesearch bench`")
    preset, seed = None, None
    if (directory / "preset.json").exists():
        meta = read_json(directory / "preset.json")
        try:
            preset = Preset.from_dict(meta["preset"]["name"], meta["preset"])
            seed = meta["seed"]
        except (KeyError, TypeError) as err:
            raise NoiseSearchError(f"{directory / 'preset.json'} is not a bench preset ({err!r})") from None
        except NoiseSearchError as err:
            raise NoiseSearchError(f"{directory / 'preset.json'}: {err}") from None
    settings = read_json(directory / SETTINGS) if (directory / SETTINGS).exists() else None
    env_path = directory / "environment.jsonl"
    environment = read_json(env_path, lines=True) if env_path.exists() else {}
    results = load_results(directory / RESULTS)
    return Run(directory, results.records, preset, seed, environment, results.duplicates, results.torn, settings)


def run_label(record: dict[str, Any]) -> str:
    return RunSpec(record["algorithm"], record["params"]).label


def summarize(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (run label, column): n, mean, std, standard error, evaluator mean, NFE per image, wall time."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(run_label(r), r["column"])].append(r)
    stats = {}
    for key, rs in groups.items():
        values = np.array([r["reward_value"] for r in rs])
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        stats[key] = {
            "n": len(rs), "mean": float(values.mean()), "std": std, "se": std / math.sqrt(len(rs)),
            "evaluator": float(np.mean([r["evaluator"] for r in rs])),
            "nfe": float(np.mean([r["nfe"] for r in rs])),
            "wall": float(sum(r["wall_time_s"] for r in rs)),
        }
    return stats


def slot(algorithm: str, params: dict[str, Any], column: str, repeat: int) -> str:
    """A cell's place in the preset's grid: its run, column and repeat (the settings all cells of a run
    directory share, since run.json refuses a resume with others)."""
    return json.dumps([algorithm, params, column, repeat], sort_keys=True)


def missing_cells(run: Run) -> list[str]:
    """Cells of the run's preset with fewer results than labels."""
    if run.preset is None:
        return []
    counts: dict[str, int] = defaultdict(int)
    for r in run.records:
        if r["label_index"] < run.preset.labels:
            counts[slot(r["algorithm"], r["params"], r["column"], r["repeat"])] += 1
    found = [(c, counts[slot(c.run.algorithm, c.run.params, c.column.name, c.repeat)])
             for c in preset_cells(run.preset)]
    return [f"{c.run.label} / {c.column.name} / repeat {c.repeat}: {n} of {run.preset.labels} labels"
            for c, n in found if n < run.preset.labels]


def results_table(records: list[dict[str, Any]]) -> Block:
    stats = summarize(records)
    rows_order = list(dict.fromkeys(run_label(r) for r in records))
    columns = list(dict.fromkeys(r["column"] for r in records))
    header = ["method", *columns, "NFE / image", "wall time (s)"]
    rows = []
    for label in rows_order:
        cells, nfe, wall = [], None, 0.0
        for col in columns:
            s = stats.get((label, col))
            if s is None:
                cells.append("—")
                continue
            cells.append(f"{s['mean']:.4f} ± {s['std']:.3f} (± {s['se']:.3f} se) · eval {s['evaluator']:.3f}")
            nfe = s["nfe"] if nfe is None else nfe
            wall += s["wall"]
        rows.append([label, *cells, "—" if nfe is None else f"{nfe:.0f}", f"{wall:.1f}"])
    return ("table", header, rows)


def label_axes(ax, xlabel: str, ylabel: str, title: str, legend: bool = False) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend()


def save_figure(fig, out: Path, name: str) -> Path:
    """Lay out, write as PNG under `out` and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return out / name


def series_name(record: dict[str, Any]) -> str:
    """The line a result belongs to in reward-against-NFE plots: its algorithm, and a schedule's source."""
    named = record["params"].get("search_schedule")
    return f"{record['algorithm']} [{named}]" if isinstance(named, str) else record["algorithm"]


def plot_scaling(records: list[dict[str, Any]], out: Path) -> list[Block]:
    """Reward against NFE per image (log axis), one line per algorithm and column with ≥ 2 budgets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    stats = summarize(records)
    blocks = []
    for column in dict.fromkeys(r["column"] for r in records):
        series: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for r in {(series_name(r), run_label(r)) for r in records if r["column"] == column}:
            s = stats[(r[1], column)]
            series[r[0]].append((s["nfe"], s["mean"], s["se"]))
        if not any(len({p[0] for p in v}) >= 2 for v in series.values()):
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for algorithm, points in sorted(series.items()):
            nfe, mean, se = (np.array(p) for p in zip(*sorted(points), strict=True))
            ax.errorbar(nfe, mean, yerr=se, marker="o", capsize=3, label=algorithm)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        label_axes(ax, "NFE per image (log)", f"{column} reward (mean ± se)", f"Reward against compute: {column}",
                   legend=True)
        path = save_figure(fig, out, f"scaling_{column}.png")
        blocks.append(("img", path, f"{column} reward against NFE per image"))
    return blocks


NEW_FAMILIES = ("smc", "svdd", "evo", "rbf")  # the particle, value-decoding, evolutionary and budget-forcing families
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

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
            new = algorithm in NEW_FAMILIES
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
        blocks.append(("img", path, f"{column}: reward against NFE per image, every family"))
    return blocks


def families_table(records: list[dict[str, Any]], budgets: tuple[int, ...]) -> Block:
    """Per (column, budget): the best run at that budget with its reward ± se and evaluator, the runner-up and
    the margin, and the best of the new families against the best ε-greedy and adaptive ε-greedy runs there
    (differences paired over labels, ± their standard error)."""
    stats = summarize(records)
    algorithm = {run_label(r): r["algorithm"] for r in records}
    rows = []
    for column in dict.fromkeys(r["column"] for r in records):
        for b in budgets:
            here = sorted(((s["mean"], label) for (label, col), s in stats.items()
                           if col == column and budget_of(s["nfe"], budgets) == b), reverse=True)
            if not here:
                continue
            ranked = [label for _, label in here]
            best, runner_up = ranked[0], ranked[1] if len(ranked) > 1 else None
            new, eps, adaptive = (next((label for label in ranked if algorithm[label] in names), None)
                                  for names in (NEW_FAMILIES, ("eps_greedy",), ("adaptive_eps_greedy",)))
            s = stats[(best, column)]
            rows.append([column, str(b), best, f"{s['mean']:.4f} ± {s['se']:.4f}", f"{s['evaluator']:.3f}",
                         f"{s['nfe']:.0f}", runner_up or "—", shown_difference(records, best, runner_up, column),
                         new or "—", "—" if new is None else f"{stats[(new, column)]['mean']:.4f} ± "
                                                              f"{stats[(new, column)]['se']:.4f}",
                         shown_difference(records, new, eps, column),
                         shown_difference(records, new, adaptive, column)])
    return ("table", ["reward", "budget", "best method", "reward ± se", "evaluator", "NFE / image", "runner-up",
                      "best − runner-up", "best new family", "its reward ± se", "new − ε-greedy",
                      "new − adaptive"], rows)


def families_blocks(run: Run, out: Path) -> list[Block]:
    """The families section, for presets with budgets: the plots and the table of the best method per budget."""
    budgets = run.preset.target_nfes if run.preset is not None else ()
    if not budgets or not run.records:
        return []
    return [
        ("h", 2, "Families at matched NFE"),
        ("p", f"Runs are grouped by the budget their metered NFE per image lies within {BUDGET_TOLERANCE:.0%} of. "
              "Rewards: mean ± standard error over labels; evaluator: the held-out classifier's mean probability "
              "of the label beside the search reward (verifier hacking shows as a gap). Differences are paired "
              "over the labels and sample seeds both runs share (mean ± standard error). New families: "
              f"{', '.join(NEW_FAMILIES)}; ε-greedy and adaptive: the best such run at the budget."),
        families_table(run.records, budgets),
        *plot_families(run.records, budgets, out),
    ]


VARIANTS = {True: "elitist", False: "plain (the paper's Algorithm 1)"}  # eps_greedy's elitism parameter


def trace_cells(run: Run) -> list:
    """Per column and variant (elitist or not), the ε-greedy cells (without a schedule) of the largest K: the
    traces the figures use."""
    if run.preset is None:
        return []
    chosen = {}
    for cell in preset_cells(run.preset):
        params = cell.run.params
        if cell.run.algorithm != "eps_greedy" or params.get("search_schedule"):
            continue
        key = (cell.column.name, params.get("elitism", True))
        best = chosen.get(key)
        if best is None or params.get("K", 20) > best[0]:
            chosen[key] = (params.get("K", 20), cell.run)
    return [cell for cell in preset_cells(run.preset)
            if chosen.get((cell.column.name, cell.run.params.get("elitism", True)), (0, None))[1] == cell.run]


def load_traces(run: Run) -> dict[str, dict[str, Trace]]:
    """ε-greedy traces per column and variant (conditions renumbered by label index and repeat)."""
    traces: dict[tuple[str, str], list[dict[str, np.ndarray]]] = defaultdict(list)
    for cell in trace_cells(run):
        variant = VARIANTS[cell.run.params.get("elitism", True)]
        for path in sorted((run.directory / "traces").glob(f"{cell.slug}_*.npz")):
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


KBAR_PANELS = {"wins": "k̄, mean k − 1 of the iterations a global draw won",
               "paper": "k̄, Σ (k − 1)·I_k / (K − 1) (the paper's)"}


def kbar_table(variants: dict[str, Trace]) -> Block:
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
    return ("table", header, rows)


def plot_traces(traces: dict[str, dict[str, Trace]], out: Path) -> list[Block]:
    """k̄(σ) of both definitions for each variant with bootstrap intervals, the global-win rate per step (the
    paper's Fig. 2), a table of the k̄ figures, and the elitist incumbent over iterations."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks: list[Block] = []
    for column, variants in traces.items():
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
        blocks.append(("img", path, f"k̄(σ) (both definitions, 90 % bootstrap intervals over conditions) and "
                                    f"global-win rate, {column}"))
        blocks.append(("p", f"k̄ per step, {column}: mean over conditions [90 % bootstrap interval]; 'wins' is the mean "
                            "k − 1 of the iterations a global draw won, 'paper' Σ (k − 1)·I_k / (K − 1)."))
        blocks.append(kbar_table(variants))

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
        path = save_figure(fig, out, f"incumbent_{column}.png")
        blocks.append(("img", path, f"incumbent reward over iterations, {column}"))
    return blocks


def image_grids(run: Run, out: Path) -> list[Block]:
    """One grid per (method, column) of the first repeat's images, in label order."""
    blocks: list[Block] = []
    if run.preset is None:
        return blocks
    for cell in preset_cells(run.preset):
        if cell.repeat != 0:
            continue
        parts = sorted((run.directory / "images").glob(f"{cell.slug}_*.npz"))
        if not parts:
            continue
        images, order = [], []
        for part in parts:
            with np.load(part) as data:
                images.append(data["images"])
                order.append(data["label_index"])
        pixels = np.concatenate(images)[np.argsort(np.concatenate(order))]
        tensor = torch.from_numpy(pixels).float().div(127.5).sub(1)[:, None]
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"grid_{cell.slug}.png"
        make_grid(tensor, ncol=12, scale=2).save(path)
        blocks.append(("img", path, f"{cell.run.label}, {cell.column.name}"))
    return blocks


MODEL_NAMES = {"embedded": "the embedded MNIST model", "embedded_flow": "the embedded MNIST rectified-flow model"}


def build_blocks(run: Run, out: Path) -> list[Block]:
    blocks: list[Block] = [("h", 1, f"noisesearch bench report: {run.preset.name if run.preset else run.directory}")]
    env = run.environment
    blocks.append(("p", f"{len(run.records)} results from `{run.directory}`; seed {run.seed}; "
                        f"noisesearch {env.get('noisesearch')}, torch {env.get('torch')}, "
                        f"{env.get('cpu_count')} CPUs ({env.get('processor') or 'model not recorded'}, "
                        f"{env.get('cpu_capability') or 'vector ISA not recorded'}), "
                        f"git commit {env.get('git_commit')}"
                        f"{' with uncommitted changes to the package' if env.get('git_dirty') else ''}."))
    left_out = []
    if run.duplicates:
        left_out.append(f"{run.duplicates} duplicate lines of {RESULTS} are left out (the first record of each "
                        "cell and label counts)")
    if run.torn:
        left_out.append(f"the last line of {RESULTS} is incomplete (a bench killed mid-write, or still writing) "
                        "and is left out")
    if run.settings is None:
        left_out.append(f"the run has no {SETTINGS} (written before bench kept its settings): it cannot be "
                        "resumed or reused")
    if left_out:
        blocks.append(("p", "**Note**: " + "; ".join(left_out) + "."))
    missing = missing_cells(run)
    if missing:
        blocks.append(("p", f"**Partial run**: {len(missing)} cells are missing or incomplete:"))
        blocks.append(("table", ["missing cell"], [[m] for m in missing]))
    backend = (run.settings or {}).get("backend", "embedded")
    model = MODEL_NAMES.get(backend, f"the {backend} backend's model")
    blocks.append(("h", 2, f"Results on {model} ({(run.settings or {}).get('sampler', 'heun')} sampler)"))
    blocks.append(("p", "Each cell: mean ± std of the search reward over labels and seeds (± standard error), then "
                        "the held-out evaluator's mean probability of the label (verifier hacking shows as a gap "
                        "between the classifier column and its evaluator score). NFE per image is metered."))
    blocks.append(results_table(run.records))
    blocks.append(("h", 2, "Published: the paper's Table 1 (EDM on ImageNet, not directly comparable)"))
    blocks.append(("table", ["method", "brightness", "compressibility", "classifier", "NFE"],
                   [[m, b, c, k, str(n)] for m, b, c, k, n in PAPER_TABLE1]))
    scaling = plot_scaling(run.records, out)
    if scaling:
        blocks.append(("h", 2, "Reward against NFE"))
        blocks.extend(scaling)
    blocks.extend(families_blocks(run, out))
    blocks.extend(adaptive_blocks(run.records, summarize(run.records), run.directory, out))
    blocks.extend(stream_blocks(run.records, run.directory, out))
    traces = plot_traces(load_traces(run), out)
    if traces:
        blocks.append(("h", 2, "When does exploitation pay? (ε-greedy traces, the paper's Fig. 2)"))
        blocks.extend(traces)
    grids = image_grids(run, out)
    if grids:
        blocks.append(("h", 2, "Images (first repeat, in label order)"))
        blocks.extend(grids)
    return blocks


def to_markdown(blocks: list[Block], out: Path) -> str:
    lines = []
    for block in blocks:
        if block[0] == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif block[0] == "p":
            lines += [block[1], ""]
        elif block[0] == "table":
            lines += ["| " + " | ".join(block[1]) + " |", "|" + " --- |" * len(block[1])]
            lines += ["| " + " | ".join(row) + " |" for row in block[2]] + [""]
        else:
            lines += [f"![{block[2]}]({block[1].relative_to(out)})", ""]
    return "\n".join(lines)


def to_html(blocks: list[Block]) -> str:
    body = []
    for block in blocks:
        if block[0] == "h":
            body.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            body.append(f"<p>{html.escape(block[1]).replace('**', '')}</p>")
        elif block[0] == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        else:
            data = base64.b64encode(block[1].read_bytes()).decode()
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}img{max-width:100%}")
    head = f"<head><meta charset='utf-8'><title>noisesearch report</title><style>{style}</style></head>"
    return f"<!doctype html><html>{head}<body>{''.join(body)}</body></html>\n"


def write_report(run_dir: Path, out: Path | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html (with its PNGs) for a bench run into `out` (default RUN_DIR/report);
    returns both paths. Nothing else is written: the run's own files are only read. An `out` that is a file
    or the run directory itself is a one-line NoiseSearchError."""
    run = load_run(Path(run_dir))
    out = Path(out) if out is not None else Path(run_dir) / "report"
    if out.exists() and not out.is_dir():
        raise NoiseSearchError(f"--out {out} is a file: give a directory for the report")
    if out.resolve() == Path(run_dir).resolve():
        raise NoiseSearchError(f"--out {out} is the run directory: give another directory for the report "
                               "(default RUN_DIR/report)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        blocks = build_blocks(run, out)
        md, page = out / "report.md", out / "report.html"
        md.write_text(to_markdown(blocks, out) + "\n")
        page.write_text(to_html(blocks))
    except OSError as err:
        raise NoiseSearchError(f"the report to {out} failed: {err.strerror} ({err.filename})") from None
    return md, page

