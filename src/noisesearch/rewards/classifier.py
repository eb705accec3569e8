"""Classifier-probability rewards: the verifier (used in search) and the held-out evaluator."""

from __future__ import annotations

from pathlib import Path

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.models.classifier import load_classifier
from noisesearch.models.labels import check_labels
from noisesearch.rewards.registry import register_reward


class ClassifierProbability:
    """Softmax probability that a digit classifier gives to the conditioning label."""

    def __init__(self, weights: str, weights_dir: Path | str | None = None) -> None:
        self.model = load_classifier(weights, weights_dir)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != (1, 28, 28):
            raise NoiseSearchError(f"reward '{self.name}' scores 1x28x28 MNIST images, got {tuple(images.shape[1:])}")
        labels = check_labels(cond)
        probs = torch.softmax(self.model(images.clamp(-1, 1)), dim=1)
        return probs.gather(1, labels[:, None]).squeeze(1)


@register_reward("classifier")
class Verifier(ClassifierProbability):
    """Verifier softmax probability of the conditioning class (CNN trained on MNIST t10k 0-4999)."""

    name = "classifier"

    def __init__(self, weights_dir: Path | str | None = None) -> None:
        super().__init__("verifier", weights_dir)


@register_reward("evaluator", scoring_only=True)
class Evaluator(ClassifierProbability):
    """Held-out evaluator probability of the conditioning class (trained on 5000-9999); scoring only."""

    name = "evaluator"

    def __init__(self, weights_dir: Path | str | None = None) -> None:
        super().__init__("evaluator", weights_dir)
