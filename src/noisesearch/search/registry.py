"""Algorithms register under a name; the CLI, the bench and the API resolve names here."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, overload

from noisesearch.errors import NoiseSearchError
from noisesearch.naming import claim_name, renamed_keys
from noisesearch.search.base import SearchAlgorithm

AlgorithmClass = type[SearchAlgorithm]
_ALGORITHMS: dict[str, AlgorithmClass] = {}


@overload
def register_algorithm(cls: AlgorithmClass, *, replace: bool = False) -> AlgorithmClass: ...
@overload
def register_algorithm(cls: None = None, *, replace: bool = False) -> Callable[[AlgorithmClass], AlgorithmClass]: ...


def register_algorithm(cls: AlgorithmClass | None = None, *, replace: bool = False
                       ) -> AlgorithmClass | Callable[[AlgorithmClass], AlgorithmClass]:
    """Class decorator: make an algorithm constructible by its `name`.

    `@register_algorithm` or `register_algorithm(cls)` refuses a name that another class holds (a
    NoiseSearchError); `@register_algorithm(replace=True)` or `register_algorithm(cls, replace=True)`
    replaces it. Registering the same class again (or its re-import: same module and qualified name) is
    not a clash."""

    def add(new: AlgorithmClass) -> AlgorithmClass:
        claim_name(_ALGORITHMS, new.name, new, "algorithm", replace)
        return new

    return add if cls is None else add(cls)


def algorithm_names() -> list[str]:
    return sorted(_ALGORITHMS)


def algorithm_class(name: str) -> type[SearchAlgorithm]:
    if not isinstance(name, str) or name not in _ALGORITHMS:
        raise NoiseSearchError(f"unknown algorithm '{name}': choose one of {', '.join(algorithm_names())}")
    return _ALGORITHMS[name]


def algorithm_params(name: str) -> dict[str, Any]:
    """Parameter names of an algorithm with their defaults."""
    return {f.name: f.default for f in dataclasses.fields(algorithm_class(name)) if f.init}


def canonical_params(algorithm_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A new dict of `params` with the old names of the algorithm's renamed parameters (its class's `renamed`,
    {old: new}) written as the new ones; each old name warns once per process (a RenamedWarning), and a
    parameter given under both names is a NoiseSearchError. Otherwise pure: `params` is left as it is."""
    return renamed_keys(algorithm_class(algorithm_name).renamed, params, f"algorithm '{algorithm_name}'")


def get_algorithm(name: str, **params: Any) -> SearchAlgorithm:
    """Construct the algorithm registered as `name` (old names of renamed parameters still accepted, see
    canonical_params); unknown parameters are a NoiseSearchError."""
    cls = algorithm_class(name)
    params = canonical_params(name, params)
    unknown = sorted(set(params) - set(algorithm_params(name)))
    if unknown:
        accepted = ", ".join(algorithm_params(name)) or "none"
        raise NoiseSearchError(f"algorithm '{name}' has no parameter {', '.join(unknown)}; it takes: {accepted}")
    cls.check_param_types(params)
    algorithm = cls(**params)
    cls.check_no_nan(params)
    return algorithm
