"""Rewards register under a name; the CLI, the bench and the API resolve names here."""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from noisesearch.errors import NoiseSearchError
from noisesearch.naming import claim_name, describe

_REWARDS: dict[str, Callable[..., Any]] = {}
_SCORING_ONLY: set[str] = set()  # rewards that score final images but are no search reward (held-out evaluators)
_ORACLES: set[str] = set()  # search rewards that see the final evaluation (Ma et al.'s oracle verifiers)
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def register_reward(name: str, *, replace: bool = False, scoring_only: bool = False, oracle: bool = False
                    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Class decorator: make a reward constructible by name; a name that another class or factory holds is a
    NoiseSearchError unless `replace=True` (the same class again, as a module imported twice, is no clash).
    `scoring_only=True` declares a held-out evaluator: it scores final images but is refused as a search reward.
    `oracle=True` declares an oracle verifier (Ma et al.): a search reward built on the final evaluation itself, so
    that a search it guided leaves no evaluation held out (reports must say so)."""

    def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
        claim_name(_REWARDS, name, factory, "reward", replace)
        (_SCORING_ONLY.add if scoring_only else _SCORING_ONLY.discard)(name)
        (_ORACLES.add if oracle else _ORACLES.discard)(name)
        return factory

    return wrap


def reward_names() -> list[str]:
    return sorted(_REWARDS)


def reward_factory(name: str) -> Callable[..., Any]:
    """The class (or factory) registered as `name`."""
    if name not in _REWARDS:
        raise NoiseSearchError(f"unknown reward '{name}': choose one of {', '.join(reward_names())}")
    return _REWARDS[name]


def is_scoring_only(name: str) -> bool:
    """Whether reward `name` was registered scoring-only (a held-out evaluator, no search reward)."""
    reward_factory(name)
    return name in _SCORING_ONLY


def is_oracle(name: str) -> bool:
    """Whether reward `name` was registered as an oracle: a search it guided saw the final evaluation (the held-out
    evaluator's network or the population metric's statistics), so that evaluation is no longer held out."""
    reward_factory(name)
    return name in _ORACLES


def is_set_level(reward: object) -> bool:
    """Whether a reward (a registered name, or a reward object) is set-level: it scores a candidate against the set
    of images chosen so far (class attribute `set_level = True`; see noisesearch.problem.SetLevelReward)."""
    owner = reward_factory(reward) if isinstance(reward, str) else reward
    return getattr(owner, "set_level", False) is True


def reward_kinds(name: str) -> list[str]:
    """What sets reward `name` apart from a point-wise search reward, in words (for `noisesearch list`)."""
    kinds = {"scoring-only (a held-out evaluator)": is_scoring_only(name),
             "oracle (a search with it leaves the evaluation it is built on no longer held out)": is_oracle(name),
             "set-level (scores a candidate against the images chosen before it; conditions go in order)":
                 is_set_level(name)}
    return [kind for kind, holds in kinds.items() if holds]


def reward_label(reward: object) -> str:
    """A reward's name for messages: the name given, or a reward object's `name` (else its class's)."""
    return reward if isinstance(reward, str) else getattr(reward, "name", type(reward).__name__)


def check_point_wise(reward: object, what: str) -> None:
    """A one-line NoiseSearchError when `reward` (a name or an object) is set-level and `what` (e.g. "calibrate")
    scores many conditions' candidates together or in parts, which a set-level reward cannot allow."""
    if is_set_level(reward):
        raise NoiseSearchError(f"{what} cannot use the set-level reward '{reward_label(reward)}' (it scores a "
                               "candidate against the images chosen before it, so conditions go in order, in one "
                               "run): use a point-wise reward here; a set-level one searches through search, sample "
                               "or bench")


def check_search_reward(name: str) -> None:
    """A one-line NoiseSearchError unless `name` is a registered reward that may guide a search (not unknown,
    not scoring-only): what builds a reward for search calls this before any model loads."""
    if not isinstance(name, str):
        raise NoiseSearchError(f"a reward name must be a string, got a {type(name).__name__}")
    if is_scoring_only(name):
        searchable = [r for r in reward_names() if r not in _SCORING_ONLY]
        raise NoiseSearchError(f"reward '{name}' is scoring-only (a held-out evaluator: searching against it would "
                               f"leave nothing held out): give it as the evaluator and search with another reward, "
                               f"e.g. {', '.join(searchable)}")


def check_step_reward(reward: object, what: str) -> None:
    """A one-line NoiseSearchError for a reward (a name or an object) that compares each final image with its own
    trajectory (it declares x0_sigma): `what` scores intermediate states, which such a reward cannot."""
    factory = reward_factory(reward) if isinstance(reward, str) else reward
    if getattr(factory, "x0_sigma", None) is not None:
        raise NoiseSearchError(f"{what} scores intermediate states, but reward '{getattr(factory, 'name', reward)}' "
                               "scores only final images against their own trajectory's x0 prediction: search with "
                               "it over whole trajectories instead (e.g. best_of_n)")


def check_evaluator(evaluator: object) -> None:
    """A one-line NoiseSearchError unless `evaluator` is "auto", None or a registered reward's name, checked
    before any search so that a misspelt evaluator does not fail after the run."""
    if evaluator is None or evaluator == "auto":
        return
    if not isinstance(evaluator, str):
        raise NoiseSearchError(f"evaluator must be a reward name, 'auto' or None, got a {type(evaluator).__name__}")
    if evaluator not in _REWARDS:
        raise NoiseSearchError(f"unknown evaluator '{evaluator}': choose a reward ({', '.join(reward_names())}), "
                               "auto (the backend's) or none")
    if getattr(_REWARDS[evaluator], "x0_sigma", None) is not None:
        raise NoiseSearchError(f"reward '{evaluator}' cannot be the evaluator: it needs each image's trajectory (its "
                               "x0 prediction at an earlier step), which an evaluator of final images does not see")
    if is_set_level(evaluator):
        raise NoiseSearchError(f"reward '{evaluator}' is set-level and scores no single final image: judge a set "
                               "with the population metrics (FID) and give a point-wise evaluator, auto or none")


def get_reward(name: str, **kwargs: Any) -> Any:
    """Construct the reward registered as `name` with its constructor arguments (as given: no parsing);
    a constructor that rejects their types or values is a one-line NoiseSearchError."""
    factory = reward_factory(name)
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NoiseSearchError(f"reward '{name}' cannot be built with {kwargs or 'no arguments'} ({first})") from None


def describe_reward(name: str) -> tuple[str, dict[str, Any]]:
    """First docstring line and constructor defaults of a registered reward."""
    return describe(reward_factory(name))


def reward_parameters(name: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters of a reward's constructor, annotations evaluated where they can be."""
    factory = reward_factory(name)
    try:
        signature = inspect.signature(factory, eval_str=True)
    except (NameError, TypeError, SyntaxError):  # an annotation names what only type checkers import
        signature = inspect.signature(factory)
    return {p.name: p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def parse_reward_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments of reward `name` with string values parsed to the parameter's type.

    The type is the parameter's annotation, or else the type of its default: int, float, bool (true/false,
    1/0, yes/no, on/off), str, Path, JSON for dict and list, `X | None` ("none" gives None); a union
    tries its types in that order (str last). Values that are not strings (from the Python API) pass as
    they are. An unknown key or an unparsable value is a one-line NoiseSearchError naming the accepted
    keys or the expected type, e.g. parse_reward_args("compressibility", {"quality": "95"}) == {"quality": 95}.
    """
    params = reward_parameters(name)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in inspect.signature(reward_factory(name)).parameters.values())
    unknown = sorted(set(args) - set(params))
    if unknown and not takes_any:
        raise NoiseSearchError(f"reward '{name}' takes no argument {', '.join(unknown)}; "
                               f"it takes: {', '.join(params) or 'none'}")
    parsed = {}
    for key, value in args.items():
        param = params.get(key)
        if not isinstance(value, str) or param is None:
            parsed[key] = value
            continue
        kinds = value_types(param)
        try:
            parsed[key] = parse_value(value, kinds)
        except ValueError:
            raise NoiseSearchError(f"reward '{name}': {key}={value!r} is not {describe_types(kinds)}") from None
    return parsed


def value_types(param: inspect.Parameter) -> list[Any]:
    """The types a parameter accepts, from its annotation or else its default (str where neither says)."""
    annotation = param.annotation
    if annotation is inspect.Parameter.empty or isinstance(annotation, str):
        default = param.default
        if default is inspect.Parameter.empty or default is None:
            return [type(None), str] if default is None else [str]
        return [type(default)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]


ORDER = (type(None), bool, int, float, dict, list, tuple, Path)


def parse_value(text: str, kinds: Sequence[Any]) -> Any:
    """`text` as the first of `kinds` (in the order of ORDER, str last) that parses it; ValueError if none."""
    plain = [typing.get_origin(k) or k for k in kinds]
    candidates = [k for k in ORDER if k in plain or (k is list and is_sequence(plain))]
    if str in plain or Any in plain:
        candidates.append(str)
    for kind in candidates:
        try:
            return parse_as(text, kind)
        except ValueError:
            continue
    raise ValueError(text)


def is_sequence(kinds: Sequence[Any]) -> bool:
    """Whether one of `kinds` is a sequence type other than str (Sequence[str] parses as a JSON list)."""
    return any(isinstance(k, type) and issubclass(k, Sequence) and k is not str for k in kinds)


def parse_as(text: str, kind: Any) -> Any:
    """`text` as one type; ValueError if it is not one."""
    stripped = text.strip()
    if kind is type(None):
        if stripped.lower() == "none":
            return None
        raise ValueError(text)
    if kind is bool:
        if stripped.lower() in TRUE + FALSE:
            return stripped.lower() in TRUE
        raise ValueError(text)
    if kind in (int, float):
        return kind(stripped)
    if kind in (dict, list, tuple):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            raise ValueError(text) from None
        if not isinstance(value, dict if kind is dict else list):
            raise ValueError(text)
        return tuple(value) if kind is tuple else value
    if kind is Path:
        return Path(text)
    return text


def describe_types(kinds: Sequence[Any]) -> str:
    """'an int', 'a float or none', 'a JSON object' ... for an error message."""
    names = {type(None): "none", bool: "a bool (true/false)", int: "an int", float: "a float", str: "a string",
             dict: "a JSON object", list: "a JSON list", tuple: "a JSON list", Path: "a path"}
    plain = [typing.get_origin(k) or k for k in kinds]
    words = [names.get(k, "a JSON list" if is_sequence([k]) else getattr(k, "__name__", str(k))) for k in plain]
    return " or ".join(dict.fromkeys(w for w in words if w != "none")) + (" or none" if "none" in words else "")


def make_reward(name: str, prompts: Sequence[str] | None = None, device: str = "cpu", **kwargs: Any) -> Any:
    """A registered reward, given the prompts and device where its constructor takes them; string arguments
    (from the command line) are parsed to the constructor's types by `parse_reward_args`."""
    accepted = inspect.signature(reward_factory(name)).parameters
    if prompts is not None and "prompts" in accepted:
        kwargs.setdefault("prompts", list(prompts))
    if "device" in accepted:
        kwargs.setdefault("device", device)
    return get_reward(name, **parse_reward_args(name, kwargs))
