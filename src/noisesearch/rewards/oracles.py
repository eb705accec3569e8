"""Ma et al.'s oracle verifiers (arXiv 2501.09732, §3 and Appendix A): rewards built on the final evaluation itself.

`is_oracle` scores the probability of the conditioning class under an extractor's logits (the IS network; on the
embedded MNIST models the held-out evaluator, whose features are "MNIST-FID"). `fid_oracle` is set-level
(noisesearch.problem.SetLevelReward): it scores a candidate by the FID, against reference statistics, of the set
chosen so far with the candidate, Ma's staged update of a running mean and covariance. Both are oracles: a search
they guide leaves the evaluation they were built on no longer held out, which reports must say
(rewards.registry.is_oracle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.metrics.features import FeatureExtractor, get_extractor
from noisesearch.metrics.reference import load_reference
from noisesearch.metrics.statistics import frechet_distance
from noisesearch.models.labels import check_labels
from noisesearch.rewards.registry import register_reward

FID_WARMUP = 10  # Ma et al. initialise with 1,024 of their 50,000 selections; a run here is often 500


def extractor_of(features: str, extractor_args: dict[str, Any] | None) -> FeatureExtractor:
    """The registered feature extractor `features` built with `extractor_args` (e.g. a local weights path)."""
    if extractor_args is not None and not isinstance(extractor_args, dict):
        raise NoiseSearchError(f"extractor_args must be a dict of the extractor's arguments, got a "
                               f"{type(extractor_args).__name__}")
    return get_extractor(features, **(extractor_args or {}))


@register_reward("is_oracle", oracle=True)
class IsOracle:
    """IS oracle (Ma et al.): probability of the conditioning class under the evaluation network's logits.

    `features` names a registered extractor that is a classifier ("mnist", the held-out evaluator; "inception",
    the FID network); `extractor_args` are passed to it, e.g. {"weights": "/path/to/inception.pt"}. With mnist this
    is the evaluator's own probability: the evaluator column of a search it guided is no longer held out.
    """

    name = "is_oracle"

    def __init__(self, features: str = "mnist", extractor_args: dict[str, Any] | None = None) -> None:
        self.extractor = extractor_of(features, extractor_args)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        logits = self.extractor.logits(images)
        labels = check_labels(cond, logits.shape[1])
        return torch.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1)


@register_reward("fid_oracle", oracle=True)
class FidOracle:
    """FID oracle (Ma et al.), set-level: −FID against the reference of the set chosen so far with the candidate.

    Features come from the extractor `features` (default mnist: "MNIST-FID"; `extractor_args` as for is_oracle),
    the reference statistics from `reference` (a packaged name or a .safetensors file of that extractor's
    features). Ma's staged update: the chosen images' features are kept as a running mean and scatter matrix
    (Chan et al.'s pairwise update, float64), so a candidate is scored from them in O(d³) without revisiting
    the set. While fewer than `warmup` images are chosen (Ma: their first 1,024, chosen at random) the
    covariance of so few is no estimate, and a candidate scores −‖μ − μ_ref‖², the mean term of the FID alone;
    from then on −FID(set ∪ {candidate}, reference) with the unbiased covariance. The condition is not used.
    """

    name = "fid_oracle"
    set_level = True

    def __init__(self, reference: str | Path = "mnist_t10k", features: str = "mnist",
                 extractor_args: dict[str, Any] | None = None, warmup: int = FID_WARMUP) -> None:
        if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 1:
            raise NoiseSearchError(f"fid_oracle: warmup must be an integer of at least 1 (the selections that start "
                                   f"the running covariance), got {warmup!r}")
        self.extractor = extractor_of(features, extractor_args)
        ref = load_reference(reference)
        if ref.extractor != self.extractor.name or ref.features.shape[1] != self.extractor.dim:
            raise NoiseSearchError(f"reference {ref.name} holds {ref.features.shape[1]}-d features of extractor "
                                   f"'{ref.extractor}', not of '{self.extractor.name}' ({self.extractor.dim}-d): give "
                                   "a reference made with the same extractor")
        self.ref_mean, self.ref_cov = ref.moments
        self.warmup = warmup
        self.reset()

    def reset(self) -> None:
        """Start a new set: no image chosen."""
        self.count = 0
        self.mean = torch.zeros(self.extractor.dim, dtype=torch.float64)
        self.scatter = torch.zeros(self.extractor.dim, self.extractor.dim, dtype=torch.float64)

    def commit(self, images: torch.Tensor, cond: torch.Tensor) -> None:
        """Add chosen images to the set: their features merged into the running mean and scatter."""
        f = self.extractor.features(images).double()
        n = f.shape[0]
        mean = f.mean(dim=0)
        centred = f - mean
        delta = mean - self.mean
        total = self.count + n
        self.scatter += centred.T @ centred + torch.outer(delta, delta) * (self.count * n / total)
        self.mean += delta * (n / total)
        self.count = total

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        delta = self.extractor.features(images).double() - self.mean  # (B, d)
        size = self.count + 1
        means = self.mean + delta / size
        if self.count < self.warmup:
            return -(means - self.ref_mean).square().sum(dim=1)
        scores = []
        for mean, offset in zip(means, delta, strict=True):  # one (d, d) covariance at a time: Inception's d is 2,048
            cov = (self.scatter + torch.outer(offset, offset) * (self.count / size)) / self.count
            scores.append(-frechet_distance(mean, cov, self.ref_mean, self.ref_cov))
        return torch.tensor(scores, dtype=torch.float64)
