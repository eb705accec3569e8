"""The one rule of every registry (samplers, algorithms, rewards, backends) for taking a name, and the one way
an old spelling keeps working after a rename."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from noisesearch.errors import NoiseSearchError, RenamedWarning

_WARNED: set[tuple[str, str]] = set()  # (where, old spelling): each is warned about once per process


def same_definition(old: object, new: object) -> bool:
    """Whether `new` is `old` or the same definition made again (same module and qualified name: a module
    imported twice or reloaded)."""
    if old is new:
        return True
    try:
        return (old.__module__, old.__qualname__) == (new.__module__, new.__qualname__)  # type: ignore[attr-defined]
    except AttributeError:
        return False


def claim_name(registry: dict[str, Any], name: str, new: Any, kind: str, replace: bool = False,
               definition: Callable[[Any], object] = lambda entry: entry) -> None:
    """Store `new` in `registry` under `name`, by the one rule of every registry (samplers, algorithms,
    rewards, backends): a name held by another definition is a NoiseSearchError unless `replace`.
    `definition(entry)` is what defines an entry (its class or function); registering the same one
    again, as a module imported twice does, is no clash and keeps the newer entry."""
    if name in registry and not replace and not same_definition(definition(registry[name]), definition(new)):
        old = definition(registry[name])
        where = f" ({old.__module__}.{old.__qualname__})" if hasattr(old, "__qualname__") else ""
        raise NoiseSearchError(f"a {kind} named '{name}' is already registered{where}: pass replace=True to "
                               "replace it, or choose another name")
    registry[name] = new


def warn_renamed(old: str, new: str, where: str) -> None:
    """A RenamedWarning that `where` now spells `old` as `new`, once per process for each (where, old)."""
    if (where, old) in _WARNED:
        return
    _WARNED.add((where, old))
    warnings.warn(f"{where}: '{old}' is now '{new}'; the old name works until the next release", RenamedWarning,
                  stacklevel=3)


def renamed_keys(renames: Mapping[str, str], values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A new dict of `values` with every old key of `renames` ({old: new}) written as its new one, in place (the
    order kept), warning once per process per old key (see warn_renamed); a NoiseSearchError where a value is
    given under both names."""
    both = [old for old, new in renames.items() if old in values and new in values]
    if both:
        raise NoiseSearchError(f"{where}: give {renames[both[0]]} only ('{both[0]}' is its old name)")
    for old in values:
        if old in renames:
            warn_renamed(old, renames[old], where)
    return {renames.get(key, key): value for key, value in values.items()}


def describe(factory: Callable[..., Any]) -> tuple[str, dict[str, Any]]:
    """A registered factory's docstring summary (its first paragraph, on one line) and its constructor parameters
    with their defaults, `inspect.Parameter.empty` for a required one (for `noisesearch list`)."""
    doc = " ".join((inspect.getdoc(factory) or "").split("\n\n")[0].split())
    return doc, {p.name: p.default for p in inspect.signature(factory).parameters.values()}
