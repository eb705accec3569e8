"""The Python API's argument checks (issue 33): every mistake is a one-line NoiseSearchError raised before any
model loads, reward builds or network call runs; consent and other flags take booleans only."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import noisesearch as ns
from noisesearch import NoiseSearchError, get_algorithm, make_sampler
from noisesearch.backends import get_backend
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.testing import tiny_denoiser


@pytest.fixture(scope="module")
def tiny():
    return tiny_denoiser()


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if the model would load or the reward be built: checks must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a check ran after the model or reward loaded")
    monkeypatch.setattr("noisesearch.api.load_backend_denoiser", refuse)
    monkeypatch.setattr("noisesearch.api.reward_of", refuse)


def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and message
    return message


class Touch:
    """A pickle that, when loaded, creates a file: proof that the loader ran it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# --- 1. consent and other flags take booleans only --------------------------------------------------------------

@pytest.mark.parametrize("no", ["no", "false", "False", 0, 1, "", None, [True]])
def test_trust_model_code_that_is_not_a_bool_is_refused_and_the_pickle_never_runs(no, tmp_path):
    marker = tmp_path / "ran"
    model = tmp_path / "evil.pkl"
    model.write_bytes(pickle.dumps(Touch(marker)))
    with pytest.raises(NoiseSearchError) as err:
        ns.search(backend="edm", model=str(model), trust_model_code=no, reward="brightness", evaluator=None,
                  steps=4)
    assert "trust_model_code" in one_line(err) and "True or False" in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("option", ["batch_invariant", "compile", "trust_model_code"])
@pytest.mark.parametrize("value", ["no", "yes", "false", 1, 0.0, None])
def test_boolean_options_take_booleans_only(option, value, nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", **{option: value})
    assert option in one_line(err)


@pytest.mark.parametrize("value", ["yes", "no", 1, 0.5])
def test_progress_is_a_bool_or_a_callback(value, nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", progress=value)
    assert "progress" in one_line(err)


def test_numpy_bools_count_as_booleans(tiny):
    problem, config = ns.make_problem(reward="brightness", denoiser=tiny, steps=4, batch_invariant=np.bool_(True),
                                      max_batch=2)
    assert problem.batch_invariant is True and config["batch_invariant"] is True


@pytest.mark.parametrize("value", ["no", "false", 1, None])
def test_boolean_algorithm_parameters_take_booleans_only(value):
    with pytest.raises(NoiseSearchError) as err:
        get_algorithm("eps_greedy", elitism=value)
    assert "elitism" in one_line(err)
    with pytest.raises(NoiseSearchError) as err:
        get_algorithm("online_adaptive_eps_greedy", target_nfe=100, learn_steps=value)
    assert "learn_steps" in one_line(err)


def test_search_refuses_a_string_elitism_before_the_model_loads(nothing_loads):
    with pytest.raises(NoiseSearchError, match="elitism"):
        ns.search(algorithm="eps_greedy", elitism="no", reward="brightness")


# --- 2. the Python API's other arguments ------------------------------------------------------------------------

@pytest.mark.parametrize("labels", [torch.tensor([3, 5]), np.array([3, 5]), torch.tensor([3, 5], dtype=torch.int32),
                                    (3, 5), [np.int64(3), 5]])
def test_integer_tensors_and_arrays_are_labels(labels, tiny):
    problem, config = ns.make_problem(reward="brightness", denoiser=tiny, labels=labels, steps=4)
    assert problem.cond.tolist() == [3, 5] and config["labels"] == [3, 5] and problem.cond.dtype == torch.long


@pytest.mark.parametrize("labels", [[3.0], [True], [3, 5.5], torch.tensor([3.0]), np.array([1.0]),
                                    torch.tensor([True]), [[1, 2]], torch.tensor([[1, 2]]), "3", 3, 3.0, [None],
                                    ["3"], [-1], [2**70], {"a": 1}])
def test_labels_that_are_not_class_indices_are_refused_before_loading(labels, nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", labels=labels)
    assert "label" in one_line(err)


@pytest.mark.parametrize("prompts", ["a cat", [3], ["a cat", None], 5])
def test_prompts_must_be_a_list_of_strings(prompts):
    with pytest.raises(NoiseSearchError) as err:
        get_backend("diffusers").make_conditions(None, prompts)
    assert "prompt" in one_line(err)


def test_a_schedule_path_is_accepted_like_its_string(tmp_path):
    schedule = SearchSchedule.uniform(make_sampler("heun", 6), 2, 0.4, 2)
    schedule.save(tmp_path / "s.json")
    by_path = get_algorithm("eps_greedy", search_schedule=tmp_path / "s.json")
    by_str = get_algorithm("eps_greedy", search_schedule=str(tmp_path / "s.json"))
    assert by_path.search_schedule == by_str.search_schedule == schedule


@pytest.mark.parametrize("value", [5, 1.5, ["a.json"], {"K": [1]}, True])
def test_a_schedule_that_is_neither_a_path_nor_a_schedule_is_one_line(value):
    for algorithm in ("eps_greedy", "adaptive_eps_greedy"):
        with pytest.raises(NoiseSearchError) as err:
            get_algorithm(algorithm, search_schedule=value)
        assert "search_schedule" in one_line(err)


@pytest.mark.parametrize("budget", ["100", 100.5, 100.0, True, math.nan, [100], 0, -5])
def test_an_nfe_budget_is_a_positive_int_or_none(budget, nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", nfe_budget=budget)
    assert "budget" in one_line(err)


@pytest.mark.parametrize("params, name", [
    ({"eps": "x"}, "eps"), ({"eps": True}, "eps"), ({"eps": None}, "eps"), ({"lambda_": "0.1"}, "lambda_"),
    ({"N": 2.0}, "N"), ({"N": "4"}, "N"), ({"K": True}, "K"), ({"eps": math.nan}, "eps"),
    ({"score_with": 1}, "score_with"),
])
def test_numbers_typed_in_the_dataclass_are_checked_generically(params, name):
    with pytest.raises(NoiseSearchError) as err:
        get_algorithm("eps_greedy", **params)
    assert name in one_line(err)


@pytest.mark.parametrize("algorithm, params", [
    ("mcts", {"c_uct": "1"}), ("smc", {"inverse_temperature": None}), ("smc", {"ess_threshold": "x"}),
    ("evo", {"beta": [0.2]}), ("paths", {"sigma_start": math.nan}), ("adaptive_eps_greedy", {"min_gain": "0"}),
])
def test_float_parameters_of_every_algorithm_refuse_non_numbers(algorithm, params):
    with pytest.raises(NoiseSearchError) as err:
        get_algorithm(algorithm, **params)
    assert next(iter(params)) in one_line(err)


def test_ints_are_fine_where_floats_are_typed_and_none_where_optional():
    assert get_algorithm("eps_greedy", eps=1, lambda_=1).eps == 1
    assert get_algorithm("smc", ess_threshold=None).ess_threshold is None
    assert get_algorithm("smc", ess_threshold=0.5, inverse_temperature=np.float64(2.0)).ess_threshold == 0.5


@pytest.mark.parametrize("name, settings, what", [
    ("heun", {"rho": 0}, "rho"), ("heun", {"rho": -1.0}, "rho"), ("heun", {"rho": math.inf}, "rho"),
    ("heun", {"S_churn": math.nan}, "S_churn"), ("euler", {"S_churn": -1}, "S_churn"),
    ("heun", {"S_noise": 0}, "S_noise"), ("heun", {"S_noise": math.nan}, "S_noise"),
    ("heun", {"S_min": math.nan}, "S_min"), ("heun", {"S_min": 2.0, "S_max": 1.0}, "S_max"),
    ("heun", {"sigma_min": 0}, "sigma_min"), ("heun", {"sigma_min": math.nan}, "sigma_min"),
    ("heun", {"sigma_max": math.inf}, "sigma_max"), ("heun", {"sigma_max": 0.001}, "sigma_max"),
    ("heun", {"sigma_max": "80"}, "sigma_max"), ("heun", {"rho": True}, "rho"), ("heun", {"S_churn": "40"}, "S_churn"),
    ("flow_euler", {"shift": math.nan}, "shift"), ("flow_euler", {"t_min": math.nan}, "t_min"),
    ("flow_euler", {"shift": "3"}, "shift"),
    ("heun", {"steps": 0}, "steps"), ("heun", {"steps": 2.0}, "steps"), ("heun", {"steps": "6"}, "steps"),
    ("heun", {"steps": 10**12}, "steps"), ("heun", {"bogus": 1}, "bogus"),
])
def test_sampler_settings_are_validated(name, settings, what):
    steps = settings.pop("steps", 6)
    with pytest.raises(NoiseSearchError) as err:
        make_sampler(name, steps, **settings)
    assert what in one_line(err)


@pytest.mark.parametrize("name", [5, None, ["heun"]])
def test_a_sampler_name_that_is_not_a_string_is_one_line(name):
    with pytest.raises(NoiseSearchError) as err:
        make_sampler(name, 6)
    assert "sampler" in one_line(err)


def test_valid_sampler_settings_still_work():
    assert make_sampler("heun", 6, S_max=math.inf, S_churn=0).steps == 6
    assert make_sampler("euler", 10_000).steps == 10_000


def test_seed_and_seeds_together_are_a_conflict(nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", labels=[1, 2], seed=5, seeds=[1, 2])
    assert "seed" in one_line(err)


def test_seeds_alone_and_seed_zero_alone_work(tiny):
    assert ns.make_problem(reward="brightness", denoiser=tiny, labels=[1, 2], seeds=[7, 9], steps=4)[0].seeds == [7, 9]
    assert ns.make_problem(reward="brightness", denoiser=tiny, labels=[1, 2], seed=0, steps=4)[0].seeds == [0, 1]


@pytest.mark.parametrize("seeds", [5, "12", [1], [1, 2, 3], [1.0, 2.0]])
def test_seeds_must_be_one_integer_per_condition(seeds, nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", labels=[1, 2], seeds=seeds)
    assert "seed" in one_line(err)


def test_steps_with_a_sampler_object_is_a_conflict(nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", sampler=make_sampler("heun", 6), steps=10)
    assert "steps" in one_line(err)


@pytest.mark.parametrize("sampler", [5, ["heun"], object()])
def test_a_sampler_that_is_neither_a_name_nor_a_sampler_is_one_line(sampler, nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", sampler=sampler)
    assert "sampler" in one_line(err)


@pytest.mark.parametrize("args, what", [
    ({"steps": 1_000_000_000_000}, "steps"), ({"steps": 10_001}, "steps"), ({"steps": "18"}, "steps"),
    ({"batch_invariant": True, "max_batch": 100_000_000}, "max_batch"), ({"max_batch": 10**15}, "max_batch"),
])
def test_huge_sizes_are_refused_before_allocating(args, what, nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", **args)
    assert what in one_line(err)


@pytest.mark.parametrize("args, what", [
    ({"backend": ["embedded"]}, "backend"), ({"backend": 5}, "backend"), ({"guidance": True}, "guidance"),
    ({"guidance": "2"}, "guidance"), ({"dtype": ["float32"]}, "dtype"), ({"dtype": "float8"}, "dtype"),
    ({"device": 5}, "device"), ({"model": 5}, "model"), ({"reward_args": "a=1"}, "reward_args"),
])
def test_other_arguments_of_the_wrong_type_are_one_line_before_loading(args, what, nothing_loads):
    with pytest.raises(NoiseSearchError) as err:
        ns.make_problem(reward="brightness", **args)
    assert what in one_line(err)
