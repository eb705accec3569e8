"""Typed reward arguments: --reward-arg strings parsed against the reward constructor's signature."""

from pathlib import Path

import pytest
import torch

from noisesearch import NoiseSearchError, get_reward
from noisesearch.rewards import registry
from noisesearch.rewards.registry import make_reward, parse_reward_args


class Knobs:
    """A reward with one parameter of each kind that --reward-arg can give."""

    def __init__(self, n: int = 1, scale: float = 1.0, flag: bool = False, path: Path | None = None,
                 spec: dict | None = None, items: list[int] | None = None, label: str = "a", count=3,
                 either: int | str = 0, device: str = "cpu") -> None:
        self.args = dict(n=n, scale=scale, flag=flag, path=path, spec=spec, items=items, label=label, count=count,
                         either=either, device=device)

    def __call__(self, images, cond=None):
        return images.flatten(1).mean(1)


@pytest.fixture
def knobs(monkeypatch):
    monkeypatch.setitem(registry._REWARDS, "knobs", Knobs)
    return "knobs"


def test_the_default_quality_given_as_a_string_is_an_int_and_scores():
    assert parse_reward_args("compressibility", {"quality": "95"}) == {"quality": 95}
    reward = make_reward("compressibility", quality="95")
    assert reward.quality == 95 and type(reward.quality) is int
    flat = torch.full((1, 1, 28, 28), 0.3)
    assert torch.equal(reward(flat, None), get_reward("compressibility")(flat, None))


def test_strings_are_parsed_by_annotation_or_default(knobs):
    parsed = parse_reward_args(knobs, {
        "n": "7", "scale": "2.5", "flag": "yes", "path": "weights/x.pt", "spec": '{"a": [1, 2]}', "items": "[3, 4]",
        "label": "none", "count": "12", "either": "x"})
    assert parsed == {"n": 7, "scale": 2.5, "flag": True, "path": Path("weights/x.pt"), "spec": {"a": [1, 2]},
                      "items": [3, 4], "label": "none", "count": 12, "either": "x"}
    assert parse_reward_args(knobs, {"path": "None", "spec": "none", "either": "5"}) == {
        "path": None, "spec": None, "either": 5}
    for text, value in (("true", True), ("1", True), ("no", False), ("0", False), ("FALSE", False)):
        assert parse_reward_args(knobs, {"flag": text}) == {"flag": value}
    assert make_reward(knobs, n="2", flag="1").args["n"] == 2


def test_values_that_are_not_strings_pass_as_they_are(knobs):
    spec, items = {"a": 1}, [1]
    parsed = parse_reward_args(knobs, {"n": 2.5, "spec": spec, "items": items, "flag": 0, "path": None})
    assert parsed == {"n": 2.5, "spec": spec, "items": items, "flag": 0, "path": None}
    assert parsed["spec"] is spec and parsed["items"] is items
    assert parse_reward_args(knobs, parsed) == parsed  # parsing twice changes nothing


@pytest.mark.parametrize("args, message", [
    ({"qualty": "90"}, "reward 'compressibility' takes no argument qualty; it takes: quality"),
    ({"quality": "high"}, "reward 'compressibility': quality='high' is not an int"),
    ({"quality": "95.5"}, "reward 'compressibility': quality='95.5' is not an int"),
])
def test_unknown_keys_and_unparsable_values_are_one_line_errors(args, message):
    with pytest.raises(NoiseSearchError) as info:
        parse_reward_args("compressibility", args)
    assert str(info.value) == message
    with pytest.raises(NoiseSearchError, match=message):
        make_reward("compressibility", **args)


@pytest.mark.parametrize("key, text, expected", [
    ("flag", "maybe", "a bool (true/false)"), ("scale", "big", "a float"), ("spec", "[1]", "a JSON object or none"),
    ("items", "{}", "a JSON list or none"), ("count", "x", "an int"),
])
def test_errors_name_reward_key_and_expected_type(knobs, key, text, expected):
    with pytest.raises(NoiseSearchError) as info:
        parse_reward_args(knobs, {key: text})
    assert str(info.value) == f"reward 'knobs': {key}={text!r} is not {expected}"


def test_ensemble_members_get_typed_arguments_too():
    ens = get_reward("ensemble", members='{"brightness": {}, "compressibility": {"quality": "80"}}')
    assert ens.members["compressibility"].quality == 80


@pytest.mark.parametrize("name, kwargs, fragment", [
    ("compressibility", {"quality": [95]}, "quality must be an integer from 0 to 100"),
    ("compressibility", {"quality": "200"}, "quality must be an integer from 0 to 100"),
    ("ensemble", {"members": 5}, "reward 'ensemble' cannot be built"),
])
def test_constructor_errors_of_wrong_types_are_one_line_errors(name, kwargs, fragment):
    with pytest.raises(NoiseSearchError, match=fragment) as info:
        make_reward(name, **kwargs)
    assert "\n" not in str(info.value)
