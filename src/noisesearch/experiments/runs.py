"""What reports compute from a bench run (read through experiments.store): the summary statistics per run and
column, the streams of online runs, and the algorithm families reports group runs by."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.presets import RunSpec
from noisesearch.search import SearchAlgorithm, algorithm_class

Stats = dict[tuple[str, str], dict[str, float]]
BOOTSTRAP = 2000


def run_label(record: dict[str, Any]) -> str:
    return RunSpec.of(record).label


def summarize(records: list[dict[str, Any]]) -> Stats:
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


def registered_class(algorithm: str) -> type[SearchAlgorithm] | None:
    """The class a record's algorithm names; None for one of a plug-in that is not imported here."""
    try:
        return algorithm_class(algorithm)
    except NoiseSearchError:
        return None


def family(algorithm: str) -> str:
    """The family an algorithm declares ("" where it is not registered here)."""
    cls = registered_class(algorithm)
    return "" if cls is None else cls.family


def is_reference(algorithm: str, params: dict[str, Any]) -> bool:
    """ε-greedy (N = 4, K = 20) without a schedule: the run whose gain the adaptive search must keep."""
    return (family(algorithm) == "reference" and params.get("N") == 4 and params.get("K") == 20
            and not params.get("search_schedule"))


def streams(records: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per column, per run label: the records of repeat 0 in label order."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r["repeat"] == 0:
            out[r["column"]][RunSpec.of(r).label].append(r)
    return {c: {label: sorted(rs, key=lambda r: r["label_index"]) for label, rs in runs.items()}
            for c, runs in out.items()}


def gain_kept(run: np.ndarray, naive: np.ndarray, reference: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """(run − naive) ÷ (reference − naive) in mean over the same labels, and its paired bootstrap standard error."""
    def ratio(idx: np.ndarray) -> float:
        return float((run[idx] - naive[idx]).mean() / (reference[idx] - naive[idx]).mean())

    rng = np.random.default_rng(seed)
    n = len(run)
    draws = [ratio(rng.integers(0, n, n)) for _ in range(BOOTSTRAP)]
    return ratio(np.arange(n)), float(np.std(draws, ddof=1))
