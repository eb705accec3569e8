"""Population metrics of a bench run (Ma et al., arXiv 2501.09732): FID, KID, Inception Score and precision/recall
of each run's images per reward column against the run's reference features, with 95 % centred bootstrap
intervals over the images. Read from the features bench kept (features/): the report never reruns a model.

Each (run, column) pools its repeats' images. FID is biased upward at small n (compare lines at equal n only;
KID is unbiased); the bootstrap resamples the generated images with the reference fixed. A resample's repeated
image counts twice in means (FID's moments, precision, IS) and once in precision/recall's generated manifold."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.document import Paragraph
from noisesearch.experiments.presets import RunSpec
from noisesearch.experiments.store import Run, cell_slug
from noisesearch.metrics.population import feature_prefix, same_size
from noisesearch.metrics.reference import Reference, load_reference
from noisesearch.metrics.statistics import (
    centred_bootstrap,
    frechet_distance,
    inception_score,
    kid,
    moments,
    precision_recall_draws,
)

DRAWS = 200  # bootstrap resamples per metric and cell
# The intervals are centred bootstrap intervals (metrics.statistics.centred_bootstrap): a resample repeats images,
# which FID, KID and recall read as lost diversity, so resampled values sit far from the value θ, and percentile
# and basic (reflected) intervals excluded θ itself (basic: MNIST-FID 5.233 [0.377, 4.505] at 500 images); the
# resamples' spread about their median, placed about θ, does not.
LEVEL = 0.95
MIN_IMAGES = 20  # fewer images give no metrics (a resample of precision/recall must keep k + 1 distinct ones)
METRICS = ("fid", "kid", "is", "precision", "recall")
POPULATION_COLUMNS = ("fid", "precision", "recall")  # what the results and families tables show beside rewards
LOWER_IS_BETTER = {"fid": True, "kid": True, "is": False, "precision": False, "recall": False}
NAMES = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision", "recall": "recall"}


def metric_title(metric: str, extractor: str) -> str:
    """A metric's name as figures and tables show it, saying whose features it is on (e.g. "MNIST-FID")."""
    return f"{feature_prefix(extractor)}{NAMES[metric]}"


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def shown(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


@dataclass(frozen=True)
class Population:
    """The metrics of every (run label, column) whose images have features, under extractor `extractor` against
    reference `reference`; `n` counts the images each was computed over."""

    extractor: str
    reference: str
    metrics: dict[tuple[str, str], dict[str, Interval]]
    n: dict[tuple[str, str], int]

    def title(self, metric: str) -> str:
        return metric_title(metric, self.extractor)

    def shown(self, key: tuple[str, str], metric: str) -> str:
        """The metric with its interval, or "—" where the cell kept no features (a run of an older format)."""
        found = self.metrics.get(key)
        return "—" if found is None else found[metric].shown(4 if metric == "kid" else 3)


def record_slug(record: dict[str, Any]) -> str:
    """The file-name stem of the cell a record belongs to."""
    spec = RunSpec.of(record)
    return cell_slug(spec.algorithm, spec.params, record["column"], record["repeat"], spec.steps)


def cell_features(run: Run, records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The features (float32) and logits (None where the extractor has none) of the records' images, in record
    order; None unless every record's image has features (records of a run of format 3 have none)."""
    keys = [(record_slug(r), r["label_index"]) for r in records]
    wanted = defaultdict(set)
    for slug, k in keys:
        wanted[slug].add(k)
    rows: dict[tuple[str, int], tuple[np.ndarray, np.ndarray | None]] = {}
    for slug, indices in wanted.items():
        for part in run.cell_files("features", slug):
            with np.load(part) as data:
                for row, k in enumerate(data["label_index"].tolist()):
                    if k in indices and (slug, k) not in rows:
                        rows[(slug, k)] = (data["features"][row], data["logits"][row] if "logits" in data else None)
    if not all(k in rows for k in keys):
        return None
    features = np.stack([rows[k][0] for k in keys]).astype(np.float32)
    logits = None if any(rows[k][1] is None for k in keys) else np.stack([rows[k][1] for k in keys])
    return features, logits


def cell_metrics(features: torch.Tensor, logits: torch.Tensor | None, reference: Reference, seed: int = 0
                 ) -> dict[str, Interval]:
    """Every metric of one cell's images with its bootstrap interval (IS: NaN where there are no logits);
    precision/recall against as many reference rows as the cell has images (metrics.population.same_size)."""
    n = features.shape[0]
    mean, cov = reference.moments
    pr = precision_recall_draws(features, same_size(reference.features, n, seed))
    kid_seeds = iter(range(1, DRAWS + 1))  # each draw compares with its own random reference subset

    statistics = {
        "fid": (lambda i: frechet_distance(*moments(features[i]), mean, cov),) * 2,
        "kid": (lambda i: kid(features[i], reference.features, seed=seed)[0],
                lambda i: kid(features[i], reference.features, subsets=1, seed=next(kid_seeds))[0]),
        "precision": (lambda i: pr(i)[0],) * 2,
        "recall": (lambda i: pr(i)[1],) * 2,
    }
    if logits is not None:
        statistics["is"] = (lambda i: inception_score(logits[i], seed=seed)[0],) * 2
    shown = {}
    for metric, (point, draw) in statistics.items():
        value = point(torch.arange(n))
        shown[metric] = Interval(value, *centred_bootstrap(draw, value, n, DRAWS, seed, LEVEL))
    shown.setdefault("is", Interval(float("nan"), float("nan"), float("nan")))
    return shown


def population(run: Run) -> Population | None:
    """The population metrics of every (run label, column) of the run, computed once per Run (kept in its memo);
    None where the run names no extractor or reference, or no cell has MIN_IMAGES images with features."""
    if "population" in run.memo:
        return run.memo["population"]
    run.memo["population"] = None
    extractor = (run.settings or {}).get("extractor")
    if extractor is None or run.reference is None or not (run.directory / "features").is_dir():
        return None
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in run.records:
        groups[(RunSpec.of(r).label, r["column"])].append(r)
    found = {key: cell_features(run, rs) for key, rs in groups.items()}
    found = {key: f for key, f in found.items() if f is not None and len(f[0]) >= MIN_IMAGES}
    if not found:
        return None
    reference = load_reference(run.reference)
    if reference.extractor != extractor:
        raise NoiseSearchError(f"reference features {run.reference} are of the {reference.extractor} extractor, the "
                               f"run's of {extractor}: give a reference made with {extractor}")
    metrics = {key: cell_metrics(torch.from_numpy(f), None if lg is None else torch.from_numpy(lg), reference)
               for key, (f, lg) in found.items()}
    run.memo["population"] = Population(extractor, reference.name, metrics, {k: len(f) for k, (f, _) in found.items()})
    return run.memo["population"]


def population_note(metrics: Population | None) -> list[Paragraph]:
    """What the population columns of a table are (none where the run kept no features)."""
    if metrics is None:
        return []
    return [Paragraph(f"{metrics.title('fid')}, precision and recall (Kynkäänniemi et al., k = 3) of each run's "
                      f"images against the `{metrics.reference}` reference, on the `{metrics.extractor}` extractor's "
                      f"features, with {LEVEL:.0%} bootstrap intervals over the images ({DRAWS} resamples); a "
                      "point-wise verifier can raise every image's reward while FID rises and recall falls. \"—\": "
                      "a cell that kept no features (a run of an older format).")]
