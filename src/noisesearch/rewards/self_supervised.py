"""Self-supervised verifiers (Ma et al., arXiv 2501.09732, §3.1 and Fig. 5): the cosine similarity, in a feature
extractor's space, between a final image and the x0 prediction its own trajectory made at sigma ≈ 0.4. They need no
condition and no labelled data; Ma et al. find the score correlated with the classifier's logit (Fig. 5 left).

A reward that declares `x0_sigma` is called as reward(images, cond, x0_images): the Problem passes each final
image's x0 prediction from the sampler step whose sigma_hat is nearest to x0_sigma, taken from the run that made
the image (no extra NFE). Only algorithms that score whole trajectories' final images can pair them
(SearchAlgorithm.scores_whole_trajectories); the others refuse such a reward.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.nn import functional as F

from noisesearch.errors import NoiseSearchError
from noisesearch.metrics import get_extractor
from noisesearch.metrics.transformer_features import DINO_SIZE
from noisesearch.rewards.clip import DEFAULT_CLIP
from noisesearch.rewards.registry import register_reward

SSL_SIGMA = 0.4  # Ma et al.'s noise level of the x0 prediction


class FeatureConsistency:
    """Cosine similarity of the features of each final image and of its trajectory's x0 prediction at x0_sigma."""

    name = ""
    x0_sigma = SSL_SIGMA

    def __init__(self, extractor: str, sigma: float, **extractor_args: object) -> None:
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
            raise NoiseSearchError(f"{self.name}: sigma must be a positive number, got {sigma!r}")
        self.x0_sigma = float(sigma)
        self.extractor = get_extractor(extractor, **extractor_args)

    def __call__(self, images: torch.Tensor, cond: torch.Tensor, x0_images: torch.Tensor) -> torch.Tensor:
        both = self.extractor.features(torch.cat([images, x0_images]))
        final, early = both.split(images.shape[0])
        return F.cosine_similarity(final, early, dim=1)


@register_reward("ssl_mnist")
class SslMnist(FeatureConsistency):
    """Self-supervised: cosine of the held-out evaluator's penultimate features of the final image and of its x0
    prediction at sigma (0.4)."""

    name = "ssl_mnist"

    def __init__(self, sigma: float = SSL_SIGMA, weights_dir: Path | str | None = None) -> None:
        super().__init__("mnist", sigma, weights_dir=weights_dir)


@register_reward("ssl_clip")
class SslClip(FeatureConsistency):
    """Self-supervised: cosine of the CLIP image embeddings of the final image and of its x0 prediction at sigma."""

    name = "ssl_clip"

    def __init__(self, sigma: float = SSL_SIGMA, model: str = DEFAULT_CLIP, device: str = "cpu") -> None:
        super().__init__("clip", sigma, model=model, device=device)


@register_reward("ssl_dino")
class SslDino(FeatureConsistency):
    """Self-supervised: cosine of the DINOv2 class tokens of the final image and of its x0 prediction at sigma."""

    name = "ssl_dino"

    def __init__(self, sigma: float = SSL_SIGMA, model: str = "", size: int = DINO_SIZE, device: str = "cpu") -> None:
        if not model:
            raise NoiseSearchError("ssl_dino needs model=PATH to a Dinov2Model directory")
        super().__init__("dino", sigma, model=model, size=size, device=device)
