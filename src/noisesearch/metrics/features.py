"""Feature extractors register under a name: images in [-1, 1] (B, C, H, W) -> features (B, d), and, for
extractors that are classifiers, logits (B, K) for the Inception Score and the IS oracle.

`mnist` is the held-out evaluator's penultimate layer ("MNIST-FID": figures on it must say so): the
evaluator is trained on MNIST t10k images 5000-9999 and never guides a search unless used as an oracle.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.models.classifier import load_classifier
from noisesearch.naming import claim_name, describe

_EXTRACTORS: dict[str, Callable[..., Any]] = {}


@runtime_checkable
class FeatureExtractor(Protocol):
    """What the metrics and the feature-space verifiers need of a network. One that is no classifier sets the class
    attribute `has_logits = False`, so that the Inception Score is refused before any image is made."""

    name: str
    dim: int  # feature dimension d

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, d) float features of images in [-1, 1] shaped (B, C, H, W)."""
        ...

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K) class logits; a NoiseSearchError for an extractor that is no classifier."""
        ...


def register_extractor(name: str, *, replace: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator: make a feature extractor constructible by name (a clash is a NoiseSearchError unless
    `replace=True`)."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        claim_name(_EXTRACTORS, name, factory, "feature extractor", replace)
        return factory

    return wrap


def extractor_names() -> list[str]:
    return sorted(_EXTRACTORS)


def extractor_params(name: str) -> list[str]:
    """The constructor arguments of the extractor registered as `name` (e.g. its weights path)."""
    if name not in _EXTRACTORS:
        raise NoiseSearchError(f"unknown feature extractor '{name}': choose one of {', '.join(extractor_names())}")
    return list(inspect.signature(_EXTRACTORS[name]).parameters)


def describe_extractor(name: str) -> tuple[str, dict[str, Any]]:
    """First docstring line and constructor defaults of a registered feature extractor."""
    extractor_params(name)  # a one-line error for an unknown name
    return describe(_EXTRACTORS[name])


def get_extractor(name: str, **kwargs: Any) -> FeatureExtractor:
    """The extractor registered as `name`, built with its constructor arguments (local weight paths)."""
    extractor_params(name)  # its one-line error for an unknown name
    try:
        return _EXTRACTORS[name](**kwargs)
    except TypeError as err:
        raise NoiseSearchError(f"feature extractor '{name}' cannot be built with {kwargs or 'no arguments'} "
                               f"({str(err).splitlines()[0]})") from None


@register_extractor("mnist")
class MnistFeatures:
    """The held-out evaluator's penultimate features (128-d, after its ReLU) and its 10 logits ("MNIST-FID")."""

    name = "mnist"
    dim = 128

    def __init__(self, weights_dir: Path | str | None = None) -> None:
        self.model = load_classifier("evaluator", weights_dir)

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
            raise NoiseSearchError(f"feature extractor 'mnist' takes 1x28x28 MNIST images shaped (B, 1, 28, 28), "
                                   f"got {tuple(images.shape)}")
        return images.clamp(-1, 1)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        head = self.model.head  # Flatten, Dropout, Linear(3136, 128), ReLU, Dropout, Linear(128, 10)
        return head[:4](self.model.features(self._check(images)))

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self._check(images))
