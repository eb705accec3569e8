"""The one rule of every registry (samplers, algorithms, rewards, backends) for taking a name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from noisesearch.errors import NoiseSearchError


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
