"""Algorithms register under a name; the CLI, the bench and the API resolve names here."""

from __future__ import annotations

import dataclasses
from typing import Any

from noisesearch.errors import NoiseSearchError
from noisesearch.search.base import SearchAlgorithm

_ALGORITHMS: dict[str, type[SearchAlgorithm]] = {}


def register_algorithm(cls: type[SearchAlgorithm]) -> type[SearchAlgorithm]:
    """Class decorator: make an algorithm constructible by its `name`."""
    _ALGORITHMS[cls.name] = cls
    return cls


def algorithm_names() -> list[str]:
    return sorted(_ALGORITHMS)


def algorithm_class(name: str) -> type[SearchAlgorithm]:
    if name not in _ALGORITHMS:
        raise NoiseSearchError(f"unknown algorithm '{name}': choose one of {', '.join(algorithm_names())}")
    return _ALGORITHMS[name]


def algorithm_params(name: str) -> dict[str, Any]:
    """Parameter names of an algorithm with their defaults."""
    return {f.name: f.default for f in dataclasses.fields(algorithm_class(name)) if f.init}


def get_algorithm(name: str, **params: Any) -> SearchAlgorithm:
    """Construct the algorithm registered as `name`; unknown parameters are a NoiseSearchError."""
    cls = algorithm_class(name)
    unknown = sorted(set(params) - set(algorithm_params(name)))
    if unknown:
        accepted = ", ".join(algorithm_params(name)) or "none"
        raise NoiseSearchError(f"algorithm '{name}' has no parameter {', '.join(unknown)}; it takes: {accepted}")
    return cls(**params)
