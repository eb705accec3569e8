"""Population metrics of a set of images against a reference: which metrics, how many samples each needs, and one
call that computes them from features (and logits, for the Inception Score).

Minimum sample sizes, checked before any compute (`min_samples`):
- FID needs more samples than feature dimensions (n > d) for a full-rank covariance, and it is biased upward at
  small n (the bias shrinks as 1/n): report it from about 1,000 samples (`FID_RECOMMENDED`) and read KID below.
- KID is unbiased at any n but needs two samples per subset; IS needs at least one sample per split;
  precision/recall needs more samples than its k = 3 neighbours in each set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.metrics.features import FeatureExtractor, extractor_params, get_extractor
from noisesearch.metrics.reference import Reference, load_reference
from noisesearch.metrics.statistics import (
    PR_NEIGHBOURS,
    frechet_distance,
    inception_score,
    kid,
    moments,
    precision_recall,
)

METRICS = ("fid", "kid", "is", "pr")
IS_SPLITS = 10
FID_RECOMMENDED = 1000  # below this FID's upward bias is large: read KID
DEFAULT_REFERENCES = {"mnist": "mnist_t10k"}  # the packaged reference of an extractor's features
KEYS = {"fid": ("fid",), "kid": ("kid_mean", "kid_std"), "is": ("is_mean", "is_std"), "pr": ("precision", "recall")}
LABELS = {"fid": "FID", "kid_mean": "KID", "is_mean": "IS", "precision": "precision", "recall": "recall"}
EXTRACT_CHUNK = 256  # images per extractor call


def parse_metrics(text: str | Sequence[str]) -> tuple[str, ...]:
    """Metric names from "fid,kid,is,pr" (or a sequence), in the order given, without repeats; one-line error
    naming the choices."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else list(text)
    unknown = [n for n in names if n not in METRICS]
    if not names or unknown:
        shown = f"unknown metric '{unknown[0]}'" if unknown else "no metric given"
        raise NoiseSearchError(f"{shown}: choose from {', '.join(METRICS)} (comma-separated)")
    return tuple(dict.fromkeys(names))


def min_samples(metric: str, dim: int) -> int:
    """The fewest samples (in each set) that `metric` is defined for with features of dimension `dim`."""
    return {"fid": dim + 1, "kid": 2, "is": IS_SPLITS, "pr": PR_NEIGHBOURS + 1}[metric]


def check_sample_count(metrics: Sequence[str], n: int, dim: int, what: str = "samples") -> None:
    """A one-line error if `n` samples are too few for one of `metrics` (see the module's docstring)."""
    for metric in metrics:
        need = min_samples(metric, dim)
        if n < need:
            why = {"fid": f"FID needs more samples than the {dim} feature dimensions (recommended: "
                          f">= {FID_RECOMMENDED}; use kid for fewer)",
                   "kid": "KID needs two per subset", "is": f"IS needs one per each of its {IS_SPLITS} splits",
                   "pr": f"precision/recall needs more than its k = {PR_NEIGHBOURS} neighbours"}[metric]
            raise NoiseSearchError(f"{n} {what} are too few for {metric}: {why}; make at least {need}")


def population_metrics(features: torch.Tensor, logits: torch.Tensor | None, reference: Reference | None,
                       metrics: Sequence[str], seed: int = 0) -> dict[str, float]:
    """The chosen metrics of generated features (n, d) (and logits (n, K) for "is") against `reference` (needed
    by fid, kid and pr): keys fid, kid_mean, kid_std, is_mean, is_std, precision, recall as chosen."""
    metrics = parse_metrics(metrics)
    against = [m for m in metrics if m != "is"]
    if against and reference is None:
        raise NoiseSearchError(f"{', '.join(against)} compare against reference features: give a reference")
    if "is" in metrics and logits is None:
        raise NoiseSearchError("is needs the extractor's class logits")
    if against:
        if features.dim() != 2 or features.shape[1] != reference.features.shape[1]:
            raise NoiseSearchError(f"features shaped {tuple(features.shape)} do not match the reference "
                                   f"'{reference.name}' ({reference.features.shape[1]}-d, extractor "
                                   f"'{reference.extractor}')")
        check_sample_count(against, features.shape[0], features.shape[1])
        check_sample_count(against, reference.features.shape[0], features.shape[1],
                           f"reference samples of '{reference.name}'")
    if "is" in metrics:
        check_sample_count(["is"], logits.shape[0], logits.shape[-1])
    out: dict[str, float] = {}
    for metric in metrics:
        if metric == "fid":
            values = (frechet_distance(*moments(features), *reference.moments),)
        elif metric == "kid":
            values = kid(features, reference.features, seed=seed)
        elif metric == "is":
            values = inception_score(logits, splits=IS_SPLITS, seed=seed)
        else:
            values = precision_recall(features, same_size(reference.features, features.shape[0], seed))
        out.update(zip(KEYS[metric], values, strict=True))
    return out


def same_size(reference: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` rows of the reference drawn without replacement (seeded), or all of it if it has no more than `n`:
    precision and recall compare sets of equal size (Kynkäänniemi et al.), as k-NN radii shrink with a set's
    size, so a larger reference would lower precision and raise recall."""
    if reference.shape[0] <= n:
        return reference
    return reference[torch.randperm(reference.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]


def extract(extractor: FeatureExtractor, images: torch.Tensor, logits: bool = True,
            chunk: int = EXTRACT_CHUNK) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (n, d) and, if asked, logits (n, K) of images in [-1, 1], `chunk` images per call."""
    parts = [images[i:i + chunk] for i in range(0, images.shape[0], chunk)]
    features = torch.cat([extractor.features(p).float().cpu() for p in parts])
    return features, torch.cat([extractor.logits(p).cpu() for p in parts]) if logits else None


def feature_prefix(extractor: str) -> str:
    """What a metric's name carries to say whose features it is on: "MNIST-" for the mnist extractor, none for the
    FID network itself (inception), "clip-" and kin for others."""
    return {"mnist": "MNIST-", "inception": ""}.get(extractor, f"{extractor}-")


def metric_label(key: str, extractor: str) -> str:
    """A metric's printed name: "MNIST-FID" and kin on the mnist extractor, whose features are not Inception's."""
    return feature_prefix(extractor) + LABELS[key]


@dataclass(frozen=True)
class MetricsPlan:
    """Population metrics ready to compute on a run's images: the metrics, the extractor and the reference
    (None where only "is" is chosen)."""

    metrics: tuple[str, ...]
    extractor: FeatureExtractor
    reference: Reference | None

    def compute(self, images: torch.Tensor) -> dict[str, Any]:
        """The metrics of `images` (in [-1, 1]) with what they were measured on: n, extractor, reference."""
        features, logits = extract(self.extractor, images, logits="is" in self.metrics)
        values = population_metrics(features, logits, self.reference, self.metrics)
        return values | {"n": int(images.shape[0]), "extractor": self.extractor.name,
                         "reference": None if self.reference is None else self.reference.name}


def describe_metrics(record: dict[str, Any]) -> list[str]:
    """One printable line per metric value of a `MetricsPlan.compute` record."""
    lines = []
    for key, std in (("fid", None), ("kid_mean", "kid_std"), ("is_mean", "is_std"), ("precision", None),
                     ("recall", None)):
        if key in record:
            spread = "" if std is None else f" ± {record[std]:.4g}"
            against = "" if key == "is_mean" else f" against {record['reference']}"
            lines.append(f"{metric_label(key, record['extractor'])} {record[key]:.4g}{spread} (n {record['n']}"
                         f"{against})")
    return lines


def plan_metrics(metrics: str | Sequence[str], n: int, features: str | None, reference: str | Path | None = None,
                 features_args: dict[str, Any] | None = None, trust_model_code: bool = False) -> MetricsPlan:
    """Check and build everything the metrics of `n` images need, before any image is made: the metric names, the
    extractor `features` (built with `features_args`, e.g. a weights path, and `trust_model_code` where it takes
    it), the reference (default: the extractor's packaged one, e.g. mnist_t10k for mnist) and its agreement with
    the extractor, and the sample counts."""
    metrics = parse_metrics(metrics)
    if features is None:
        raise NoiseSearchError("population metrics need a feature extractor: name one (--metrics-features), e.g. "
                               "inception with its local weights")
    trust = {"trust_model_code": trust_model_code} if "trust_model_code" in extractor_params(features) else {}
    against = [m for m in metrics if m != "is"]
    ref = None
    if against:
        reference = reference if reference is not None else DEFAULT_REFERENCES.get(features)
        if reference is None:
            raise NoiseSearchError(f"{', '.join(against)} compare against reference features of the '{features}' "
                                   "extractor: give a reference file (--reference PATH)")
        ref = load_reference(reference)
        if ref.extractor != features:
            raise NoiseSearchError(f"reference '{ref.name}' holds features of the '{ref.extractor}' extractor, not "
                                   f"'{features}': use matching features and reference")
    extractor = get_extractor(features, **trust, **(features_args or {}))
    if "is" in metrics and not getattr(extractor, "has_logits", True):
        raise NoiseSearchError(f"is needs a classifier's logits, which the '{features}' extractor has not: use an "
                               "extractor that classifies (inception, mnist) or leave is out")
    check_sample_count(metrics, n, extractor.dim, "images")
    if ref is not None:
        if ref.features.shape[1] != extractor.dim:
            raise NoiseSearchError(f"reference '{ref.name}' has {ref.features.shape[1]}-d features, the "
                                   f"'{features}' extractor {extractor.dim}-d: make the reference with this network")
        check_sample_count(against, ref.features.shape[0], extractor.dim, f"reference samples of '{ref.name}'")
    return MetricsPlan(metrics, extractor, ref)
