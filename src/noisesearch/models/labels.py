"""Class labels of the embedded MNIST models (digits 0-9), shared by the denoiser and the classifier rewards."""

from __future__ import annotations

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.models.unet import NUM_CLASSES


def check_labels(labels: torch.Tensor, label_dim: int = NUM_CLASSES) -> torch.Tensor:
    """Labels as int64, or a NoiseSearchError naming the first one outside 0..label_dim-1 (an unconditional
    network, label_dim 0, takes label 0 only)."""
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    top = max(label_dim, 1) - 1
    bad = (labels < 0) | (labels > top)
    if bool(bad.any()):
        kind = "MNIST labels are digits 0 to 9" if label_dim == NUM_CLASSES else f"this network's labels are 0 to {top}"
        raise NoiseSearchError(f"label {int(labels[bad][0])} is outside 0-{top}: {kind}")
    return labels
