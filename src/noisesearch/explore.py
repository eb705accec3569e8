"""`noisesearch explore RUN_DIR`: one self-contained HTML page that explains a `sample` run (or one cell of a
bench run, `--cell SLUG`), image by image.

Per image: the final image beside its reward and held-out evaluator score; where the search kept a per-step
trace (`sample --trace`), the chosen x0 prediction at each searched step, every candidate's score per
iteration (global draws and local moves in two colours, the incumbent's score as a line, a tick where the
pivot moved) and the reward against the NFE spent; a bench cell's trace holds each iteration's winner only,
and a tree search's the step each simulation expanded. Images are inline PNGs and charts inline SVG: the
page needs no server and no network.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.imaging import png_bytes, to_uint8

GLOBAL, LOCAL, INCUMBENT = "#1f77b4", "#ff7f0e", "#2ca02c"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
img.px { image-rendering: pixelated; border: 1px solid #ccc; }
.image { border-top: 1px solid #ddd; padding: 1em 0; }
.row { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
.strip { display: flex; gap: 4px; flex-wrap: wrap; }
.strip figure { margin: 0; text-align: center; font-size: 11px; }
.legend span { margin-right: 1.2em; }
table.meta td { padding: 0 1em 0 0; }
"""


def explore(run_dir: Path, out: Path | None = None, cell: str | None = None) -> Path:
    """Write the page for the sample run in `run_dir`, or for its bench cell `cell` (a slug, as images/ and
    traces/ name its files), to `out` (default RUN_DIR/explore.html, or RUN_DIR/explore/SLUG.html); returns
    the page's path."""
    run_dir = Path(run_dir)
    if (run_dir / "results.jsonl").is_file():
        record, trace = bench_cell(run_dir, cell)
        default = run_dir / "explore" / f"{cell}.html"
    elif cell is not None:
        raise NoiseSearchError(f"--cell picks a cell of a bench run directory; {run_dir} holds no results.jsonl")
    else:
        record, trace = sample_run(run_dir)
        default = run_dir / "explore.html"
    sections = [image_section(image, trace) for image in record["images"]]
    page = document(record, trace, sections)
    out = Path(out) if out is not None else default
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        out.write_text(page)
    except OSError as err:
        raise NoiseSearchError(f"cannot write {out} ({err.strerror})") from None
    return out


def sample_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """A sample run's result.json, each image's PNG bytes added, and its trace (None without --trace)."""
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise NoiseSearchError(f"{run_dir} holds no result.json: give the --out directory of `noisesearch sample` "
                               "or a bench run directory")
    try:
        record = json.loads(result_path.read_text())
        for image in record["images"]:
            image["png"] = (run_dir / image["file"]).read_bytes()
    except (OSError, ValueError, KeyError) as err:
        raise NoiseSearchError(f"cannot read the run in {run_dir} ({err})") from None
    return record, load_trace([run_dir / "trace.npz"] if (run_dir / "trace.npz").is_file() else [])


def bench_cell(run_dir: Path, cell: str | None) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """One bench cell as a sample run's record (images by label index) and its trace."""
    from noisesearch.experiments.population import record_slug
    from noisesearch.experiments.store import load_run

    run = load_run(run_dir)
    slugs = sorted({record_slug(r) for r in run.records})
    if cell not in slugs:
        shown = ", ".join(slugs[:12]) + (", ..." if len(slugs) > 12 else "")
        raise NoiseSearchError(f"{run_dir} is a bench run: pick a cell with --cell SLUG, one of {shown}")
    records = sorted((r for r in run.records if record_slug(r) == cell), key=lambda r: r["label_index"])
    pixels = {}
    for path in run.cell_files("images", cell):
        with np.load(path) as data:
            pixels.update(zip(data["label_index"].tolist(), data["images"], strict=True))
    images = [{"index": r["label_index"], "label": r["label"], "seed": r["seed"], "reward": r["reward_value"],
               "evaluator": r["evaluator"], "nfe": r["nfe"], "png": png_bytes(pixels[r["label_index"]])}
              for r in records if r["label_index"] in pixels]
    evaluators = [r["evaluator"] for r in records if r["evaluator"] is not None]
    first = records[0]
    record = {"algorithm": first["algorithm"], "reward": first["column"],
              "mean_reward": float(np.mean([r["reward_value"] for r in records])),
              "mean_evaluator": float(np.mean(evaluators)) if evaluators else None,
              "nfe_per_image": float(np.mean([r["nfe"] for r in records])),
              "wall_time_s": round(first["cell_wall_time_s"], 3), "images": images,
              "config": {"params": first["params"], "evaluator": "evaluator"},
              "command": f"noisesearch bench (cell {cell} of {run_dir})"}
    return record, load_trace(run.cell_files("traces", cell))


def load_trace(paths: list[Path]) -> dict[str, np.ndarray] | None:
    """The trace columns in `paths` joined (None where there is none)."""
    parts = []
    for path in paths:
        try:
            with np.load(path) as data:
                parts.append({name: data[name] for name in data.files})
        except (OSError, ValueError) as err:
            raise NoiseSearchError(f"cannot read {path} ({err}): rerun what wrote it") from None
    if not parts:
        return None
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def document(record: dict[str, Any], trace: dict[str, np.ndarray] | None, sections: list[str]) -> str:
    config = record["config"]
    params = ", ".join(f"{k}={v}" for k, v in config.get("params", {}).items())
    evaluator = record.get("mean_evaluator")
    if trace is None:
        note = "No trace: rerun the command with <code>--trace</code> to see the search step by step."
    elif "expanded_step" in trace:
        note = "A tree search: per image, the sampler step each simulation expanded (the last step: it reached x0)."
    elif "winner_score" not in trace:
        note = "This algorithm's trace has no per-iteration scores; its final images are shown."
    elif "candidate_scores" not in trace:
        note = (f'Each iteration\'s winner: <span style="color:{GLOBAL}">● global draw</span> '
                f'<span style="color:{LOCAL}">● local move</span> <span style="color:{INCUMBENT}">— incumbent'
                "</span> (a bench cell keeps no other candidate; `sample --trace` keeps them all).")
    else:
        note = (f'Candidates per iteration: <span style="color:{GLOBAL}">● global draw</span> '
                f'<span style="color:{LOCAL}">● local move</span> '
                f'<span style="color:{INCUMBENT}">— incumbent</span>; a grey tick marks an iteration where the '
                "pivot moved, dotted lines separate the searched steps.")
    rows = [("algorithm", f"{record['algorithm']} ({params})" if params else record["algorithm"]),
            ("reward", f"{record['reward']}: mean {record['mean_reward']:.4f}"),
            ("held-out evaluator", "none" if evaluator is None else f"{config.get('evaluator')}: mean {evaluator:.4f}"),
            ("NFE per image", f"{record['nfe_per_image']:g}"), ("wall time", f"{record['wall_time_s']} s"),
            ("command", f"<code>{html.escape(str(record.get('command')))}</code>")]
    meta = "".join(f"<tr><td><b>{k}</b></td><td>{v if k == 'command' else html.escape(v)}</td></tr>"
                   for k, v in rows)
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>noisesearch run: "
            f"{html.escape(record['algorithm'])}</title><style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(record['algorithm'])} on {html.escape(record['reward'])}</h1>"
            f"<table class='meta'>{meta}</table><p class='legend'>{note}</p>{''.join(sections)}</body></html>\n")


def image_section(image: dict[str, Any], trace: dict[str, np.ndarray] | None) -> str:
    label = image.get("label", image.get("prompt", ""))
    evaluator = image.get("evaluator")
    head = (f"<h2>image {image['index']}: {html.escape(str(label))} (seed {image['seed']})</h2>"
            f"<p>reward {image['reward']:.4f} · evaluator {'—' if evaluator is None else f'{evaluator:.4f}'} · "
            f"{image['nfe']} NFE</p>")
    final = png_tag(image["png"], 168, "final image")
    parts = [f"<figure>{final}<figcaption>final</figcaption></figure>"]
    mine = None if trace is None else trace["condition"] == image["index"]
    if trace is not None and "x0_image" in trace:
        parts.append(x0_strip(trace, image["index"]))
    charts = ""
    if mine is not None and mine.any() and "winner_score" in trace:
        charts = candidates_chart(trace, mine) + (reward_chart(trace, mine) if "nfe" in trace else "")
    elif mine is not None and mine.any() and "expanded_step" in trace:
        charts = tree_chart(trace["expanded_step"][mine])
    return (f"<div class='image' data-index='{image['index']}'>{head}<div class='row'>{''.join(parts)}</div>"
            f"{charts}</div>")


def png_tag(data: bytes, size: int, alt: str) -> str:
    encoded = base64.b64encode(data).decode()
    return f"<img class='px' width='{size}' height='{size}' alt='{alt}' src='data:image/png;base64,{encoded}'>"


def x0_strip(trace: dict[str, np.ndarray], index: int) -> str:
    rows = np.flatnonzero(trace["x0_condition"] == index)
    sigma = {int(s): float(v) for s, v in zip(trace["step"], trace["sigma"], strict=True)}
    pixels = to_uint8(torch.from_numpy(trace["x0_image"][rows]))
    figures = [f"<figure>{png_tag(png_bytes(image), 56, 'x0 prediction')}<figcaption>step "
               f"{int(trace['x0_step'][r])}<br>σ {sigma.get(int(trace['x0_step'][r]), math.nan):.3g}</figcaption>"
               "</figure>" for r, image in zip(rows, pixels, strict=True)]
    return f"<div><b>chosen x0 prediction after each searched step</b><div class='strip'>{''.join(figures)}</div></div>"


def scale(values: np.ndarray, low: float, high: float, start: float, stop: float) -> np.ndarray:
    span = high - low if high > low else 1.0
    return start + (values - low) / span * (stop - start)


def axes(width: int, height: int, pad: int, low: float, high: float, x_label: str, y_label: str) -> str:
    return (f"<line x1='{pad}' y1='{height - pad}' x2='{width - 10}' y2='{height - pad}' stroke='#444'/>"
            f"<line x1='{pad}' y1='10' x2='{pad}' y2='{height - pad}' stroke='#444'/>"
            f"<text x='{pad - 6}' y='{height - pad}' text-anchor='end' font-size='11'>{low:.3g}</text>"
            f"<text x='{pad - 6}' y='18' text-anchor='end' font-size='11'>{high:.3g}</text>"
            f"<text x='{width / 2}' y='{height - 8}' text-anchor='middle' font-size='12'>{x_label}</text>"
            f"<text x='14' y='{height / 2}' font-size='12' transform='rotate(-90 14 {height / 2})' "
            f"text-anchor='middle'>{y_label}</text>")


def candidates_chart(trace: dict[str, np.ndarray], mine: np.ndarray, width: int = 900, height: int = 260,
                     pad: int = 56) -> str:
    """Every candidate's score per iteration, global and local apart, with the incumbent and the pivot's moves."""
    if "candidate_scores" in trace:
        scores, kinds = trace["candidate_scores"][mine], trace["candidate_global"][mine]
    else:  # each iteration's winner only
        scores, kinds = trace["winner_score"][mine][:, None], trace["winner_global"][mine][:, None]
    incumbent, changed, steps = trace["incumbent_score"][mine], trace["changed"][mine], trace["step"][mine]
    finite = scores[np.isfinite(scores)]
    low, high = float(min(finite.min(), incumbent.min())), float(max(finite.max(), incumbent.max()))
    x = scale(np.arange(len(scores), dtype=float), 0, max(len(scores) - 1, 1), pad + 6, width - 16)
    parts = [axes(width, height, pad, low, high, "iteration (all searched steps in order)", "score")]
    for r in np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]]):
        parts.append(f"<line x1='{x[r] - 3:.1f}' y1='10' x2='{x[r] - 3:.1f}' y2='{height - pad}' stroke='#bbb' "
                     f"stroke-dasharray='3 3'/><text x='{x[r]:.1f}' y='22' font-size='10' fill='#888'>"
                     f"step {int(steps[r])}</text>")
    for r in np.flatnonzero(changed):
        parts.append(f"<line x1='{x[r]:.1f}' y1='{height - pad}' x2='{x[r]:.1f}' y2='{height - pad + 6}' "
                     "stroke='#888'/>")
    y = scale(scores, low, high, height - pad, 14)
    for (r, j) in zip(*np.nonzero(np.isfinite(scores)), strict=True):
        parts.append(f"<circle cx='{x[r]:.1f}' cy='{y[r, j]:.1f}' r='2.6' fill='{GLOBAL if kinds[r, j] else LOCAL}' "
                     "fill-opacity='0.75'/>")
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, scale(incumbent, low, high, height - pad, 14), strict=True))
    parts.append(f"<polyline points='{line}' fill='none' stroke='{INCUMBENT}' stroke-width='2'/>")
    return (f"<div><b>candidates' scores per iteration</b><br><svg class='candidates' width='{width}' "
            f"height='{height}' xmlns='http://www.w3.org/2000/svg'>{''.join(parts)}</svg></div>")


def reward_chart(trace: dict[str, np.ndarray], mine: np.ndarray, width: int = 900, height: int = 220,
                 pad: int = 56) -> str:
    """The incumbent's score against the NFE the image had spent after each iteration."""
    nfe, incumbent = trace["nfe"][mine].astype(float), trace["incumbent_score"][mine]
    low, high = float(incumbent.min()), float(incumbent.max())
    x = scale(nfe, 0, float(nfe.max()), pad + 6, width - 16)
    y = scale(incumbent, low, high, height - pad, 14)
    line = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y, strict=True))
    return (f"<div><b>reward against NFE spent</b> (up to {int(nfe.max())} NFE by the last searched iteration)<br>"
            f"<svg class='reward' width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"
            f"{axes(width, height, pad, low, high, 'NFE spent', 'incumbent score')}"
            f"<polyline points='{line}' fill='none' stroke='{INCUMBENT}' stroke-width='2'/></svg></div>")


def tree_chart(steps: np.ndarray, width: int = 900, height: int = 220, pad: int = 56) -> str:
    """The sampler step each simulation of a tree search expanded, in simulation order."""
    x = scale(np.arange(len(steps), dtype=float), 0, max(len(steps) - 1, 1), pad + 6, width - 16)
    y = scale(steps.astype(float), 0, float(steps.max()), height - pad, 14)
    dots = "".join(f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='{GLOBAL}'/>" for a, b in zip(x, y, strict=True))
    return (f"<div><b>step expanded by each simulation</b> ({len(steps)} simulations)<br><svg class='tree' "
            f"width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'>"
            f"{axes(width, height, pad, 0, float(steps.max()), 'simulation', 'expanded step')}{dots}</svg></div>")
