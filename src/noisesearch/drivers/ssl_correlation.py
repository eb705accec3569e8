"""Ma et al.'s Fig. 5 (left) on the embedded models: does the self-supervised verifier rank images as the
supervised one does? The Spearman correlation, over naive samples (`per_class` per digit), between the ssl_mnist
score (the held-out evaluator's feature cosine of each image and its x0 prediction at sigma ≈ 0.4) and the
verifier classifier's logit and probability of the label, with percentile bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchmetrics.functional import spearman_corrcoef

from noisesearch.api import plan_search
from noisesearch.checks import is_int
from noisesearch.errors import NoiseSearchError
from noisesearch.metrics.statistics import bootstrap
from noisesearch.models.classifier import load_classifier
from noisesearch.models.unet import NUM_CLASSES
from noisesearch.rewards.self_supervised import SSL_SIGMA
from noisesearch.seeds import bench_seed


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two (n,) tensors (torchmetrics; ties take their average rank)."""
    return float(spearman_corrcoef(a.double(), b.double()))


def ssl_correlation(per_class: int = 50, seed: int = 202, sigma: float = SSL_SIGMA, draws: int = 1000,
                    level: float = 0.95, **problem_args: Any) -> dict[str, Any]:
    """Naive samples of every digit (per_class each; sample i of the run has seed bench_seed(seed, 0, i), a bench
    seed of base `seed`, so choose one no bench of yours uses), scored by ssl_mnist(sigma) and by the verifier.
    `problem_args` go to `search` (backend, steps, ...). Returns n, the Spearman correlation of the ssl score with
    the verifier's logit and with its probability of the label, each with its bootstrap interval (`draws` resamples
    of the samples, seeded by `seed`, at `level`), the mean ssl score, the x0 step's sigma_hat and the NFE."""
    if not is_int(per_class) or per_class < 2:
        raise NoiseSearchError(f"per_class must be an integer of at least 2, got {per_class!r}")
    labels = [digit for digit in range(NUM_CLASSES) for _ in range(per_class)]
    seeds = [bench_seed(seed, 0, i) for i in range(len(labels))]
    planned = plan_search(algorithm="naive", reward="ssl_mnist", reward_args={"sigma": sigma}, labels=labels,
                          seeds=seeds, evaluator=None, **problem_args)
    sigma_hat = float(planned.problem.sampler.sigma_hats[planned.problem.x0_step])
    result = planned.run()
    with torch.no_grad():
        logits = load_classifier("verifier")(result.images)
    rows = torch.arange(len(labels))
    label = torch.tensor(labels)
    scores = {"logit": logits[rows, label], "probability": logits.softmax(dim=1)[rows, label]}
    ssl = result.rewards

    def correlation(verifier: torch.Tensor) -> Callable[[torch.Tensor], float]:
        return lambda index: spearman(ssl[index], verifier[index])

    out: dict[str, Any] = {"n": len(labels), "per_class": per_class, "seed": seed, "sigma": sigma,
                           "sigma_hat": sigma_hat, "nfe_per_image": result.nfe_per_image,
                           "mean_ssl": float(ssl.mean()), "level": level, "draws": draws}
    for name, verifier in scores.items():
        out[f"spearman_{name}"] = spearman(ssl, verifier)
        out[f"interval_{name}"] = bootstrap(correlation(verifier), len(labels), draws, seed, level)
    return out
