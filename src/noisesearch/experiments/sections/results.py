"""The results table in the paper's layout (mean ± std, ± standard error, the held-out evaluator beside the
verifier, NFE per image, wall time), and the paper's published table for reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noisesearch.experiments.document import Block, Heading, Paragraph, Table
from noisesearch.experiments.population import POPULATION_COLUMNS, Population, population, population_note
from noisesearch.experiments.runs import run_label, summarize
from noisesearch.experiments.store import Run
from noisesearch.rewards import reward_names
from noisesearch.rewards.registry import is_oracle

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
MODEL_NAMES = {"embedded": "the embedded MNIST model", "embedded_flow": "the embedded MNIST rectified-flow model"}


def results_table(records: list[dict[str, Any]], metrics: Population | None = None) -> Table:
    """Per run: each column's reward and evaluator, with its population metrics beside (where `metrics`)."""
    stats = summarize(records)
    rows_order = list(dict.fromkeys(run_label(r) for r in records))
    columns = list(dict.fromkeys(r["column"] for r in records))
    shown = () if metrics is None else POPULATION_COLUMNS
    header = ["method", *(h for col in columns for h in (col, *(f"{col} {metrics.title(m)}" for m in shown))),
              "NFE / image", "wall time (s)"]
    rows = []
    for label in rows_order:
        cells, nfe, wall = [], None, 0.0
        for col in columns:
            s = stats.get((label, col))
            if s is None:
                cells += ["—"] * (1 + len(shown))
                continue
            cells.append(f"{s['mean']:.4f} ± {s['std']:.3f} (± {s['se']:.3f} se) · eval {s['evaluator']:.3f}")
            cells += [metrics.shown((label, col), m) for m in shown]
            nfe = s["nfe"] if nfe is None else nfe
            wall += s["wall"]
        rows.append([label, *cells, "—" if nfe is None else f"{nfe:.0f}", f"{wall:.1f}"])
    return Table(header, rows)


def oracle_note(records: list[dict[str, Any]]) -> list[Block]:
    """A paragraph naming the columns whose search reward is an oracle (rewards.registry.is_oracle), whose evaluator
    score is then not held out; none where no column's is."""
    columns = sorted({r["column"] for r in records if r["reward"] in reward_names() and is_oracle(r["reward"])})
    if not columns:
        return []
    return [Paragraph(f"Column{'s' if len(columns) > 1 else ''} {', '.join(columns)} searched with an oracle verifier "
                      "(Ma et al.): the search saw the evaluation itself, so its evaluator score is not held out.")]


def applies(run: Run) -> bool:
    return True


def blocks(run: Run, out: Path) -> list[Block]:
    backend = (run.settings or {}).get("backend", "embedded")
    model = MODEL_NAMES.get(backend, f"the {backend} backend's model")
    metrics = population(run)
    return [
        Heading(2, f"Results on {model} ({(run.settings or {}).get('sampler', 'heun')} sampler)"),
        Paragraph("Each cell: mean ± std of the search reward over labels and seeds (± standard error), then the "
                  "held-out evaluator's mean probability of the label (verifier hacking shows as a gap between the "
                  "classifier column and its evaluator score). NFE per image is metered."),
        *population_note(metrics),
        results_table(run.records, metrics),
        *oracle_note(run.records),
        Heading(2, "Published: the paper's Table 1 (EDM on ImageNet, not directly comparable)"),
        Table(["method", "brightness", "compressibility", "classifier", "NFE"],
              [[m, b, c, k, str(n)] for m, b, c, k, n in PAPER_TABLE1]),
    ]
