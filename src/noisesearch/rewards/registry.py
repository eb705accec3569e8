"""Rewards register under a name; the CLI, the bench and the API resolve names here."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from noisesearch.errors import NoiseSearchError

_REWARDS: dict[str, Callable[..., Any]] = {}


def register_reward(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator: make a reward constructible by name."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        _REWARDS[name] = factory
        return factory

    return wrap


def reward_names() -> list[str]:
    return sorted(_REWARDS)


def reward_factory(name: str) -> Callable[..., Any]:
    """The class (or factory) registered as `name`."""
    if name not in _REWARDS:
        raise NoiseSearchError(f"unknown reward '{name}': choose one of {', '.join(reward_names())}")
    return _REWARDS[name]


def get_reward(name: str, **kwargs: Any) -> Any:
    """Construct the reward registered as `name` with its constructor arguments."""
    return reward_factory(name)(**kwargs)


def describe_reward(name: str) -> tuple[str, dict[str, Any]]:
    """First docstring line and constructor defaults of a registered reward."""
    factory = _REWARDS[name]
    doc = (inspect.getdoc(factory) or "").splitlines()[0]
    params = {p.name: p.default for p in inspect.signature(factory).parameters.values()}
    return doc, params


def make_reward(name: str, prompts: Sequence[str] | None = None, device: str = "cpu", **kwargs: Any) -> Any:
    """A registered reward, given the prompts and device where its constructor takes them."""
    accepted = inspect.signature(reward_factory(name)).parameters
    if prompts is not None and "prompts" in accepted:
        kwargs.setdefault("prompts", list(prompts))
    if "device" in accepted:
        kwargs.setdefault("device", device)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise NoiseSearchError(f"reward '{name}' takes no argument {', '.join(unknown)}; "
                               f"it takes: {', '.join(accepted) or 'none'}")
    return get_reward(name, **kwargs)
