"""Small CNN digit classifier used as the verifier and the held-out evaluator."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from noisesearch.assets import load_fitting


class DigitClassifier(nn.Module):
    """Maps images in [-1, 1] of shape (B, 1, 28, 28) to 10 logits."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(2 * w * 7 * 7, 128), nn.ReLU(),
            nn.Dropout(0.3), nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_classifier(weights: str, weights_dir: Path | str | None = None) -> DigitClassifier:
    """A DigitClassifier with the packaged (or `weights_dir`'s) weights `weights`, in eval mode, frozen; weights
    that do not fit are a one-line NoiseSearchError naming the file."""
    return load_fitting(DigitClassifier(), weights, weights_dir, "the digit classifier").eval().requires_grad_(False)
