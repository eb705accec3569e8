"""Property-based tests (hypothesis): generated command lines, presets, schedules and reward outputs never
give a traceback, never slip an invalid value through, and a failed `sample` writes nothing."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from noisesearch import NoiseSearchError, Problem, get_algorithm, make_sampler
from noisesearch.cli import main
from noisesearch.experiments.presets import Preset
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.seeds import MAX_SEED
from noisesearch.testing import tiny_denoiser

FAST = settings(max_examples=200, deadline=None, derandomize=True)
SPECIALS = [0.0, 1.0, -1.0, 0.5, 2.0, math.nan, math.inf, -math.inf]

# --- sample's options ------------------------------------------------------------------------------------------

VALID = {  # each option's valid values, then any values (many invalid) that may replace a few of them
    "algorithm": st.sampled_from(["naive", "best_of_n", "eps_greedy"]),
    "labels": st.lists(st.integers(0, 9), min_size=1, max_size=3),
    "seed": st.integers(0, 50),
    "guidance": st.sampled_from([0.0, 1.0, 2.0]),
    "steps": st.integers(1, 3),
    "max_batch": st.integers(1, 4),
    "budget": st.one_of(st.none(), st.integers(1, 80)),
    "N": st.integers(1, 3),
    "eps": st.sampled_from([0.0, 0.4, 1.0]),
    "lambda_": st.sampled_from([0.15, 0.5]),
}
ANY = {
    "algorithm": st.sampled_from(["naive", "best_of_n", "eps_greedy", "no_such_algorithm"]),
    "labels": st.lists(st.integers(-2, 11), min_size=1, max_size=3),
    "seed": st.sampled_from([-1, MAX_SEED, MAX_SEED + 1, 2**64]),
    "guidance": st.sampled_from(SPECIALS),
    "steps": st.integers(-1, 3),
    "max_batch": st.integers(-1, 4),
    "budget": st.integers(-1, 60),
    "N": st.integers(-1, 3),
    "eps": st.sampled_from(SPECIALS),
    "lambda_": st.sampled_from(SPECIALS),
}


@st.composite
def options(draw) -> dict:
    """Valid options with up to two of them replaced by arbitrary (often invalid) values."""
    chosen = {name: draw(strategy) for name, strategy in VALID.items()}
    for name in draw(st.lists(st.sampled_from(sorted(ANY)), max_size=2, unique=True)):
        chosen[name] = draw(ANY[name])
    return chosen


def invalid_reason(o: dict) -> str | None:
    """Why these options must be refused, or None where the run must succeed (budget aside)."""
    searching = o["algorithm"] == "eps_greedy"
    checks = [
        (o["algorithm"] == "no_such_algorithm", "unknown algorithm"),
        (any(not 0 <= label <= 9 for label in o["labels"]), "label"),
        (not 0 <= o["seed"] <= MAX_SEED - len(o["labels"]) + 1, "seed"),
        (not math.isfinite(o["guidance"]), "guidance"),
        (o["steps"] < 1, "steps"),
        (o["max_batch"] < 1, "max_batch"),
        (o["budget"] is not None and o["budget"] < 1, "budget"),
        (o["algorithm"] != "naive" and o["N"] < 1, "N"),
        (searching and not 0 <= o["eps"] <= 1, "eps"),
        (searching and not (math.isfinite(o["lambda_"]) and o["lambda_"] > 0), "lambda_"),
    ]
    return next((why for bad, why in checks if bad), None)


def argv_of(o: dict, out) -> list[str]:
    argv = ["sample", "--algorithm", o["algorithm"], "--labels", ",".join(map(str, o["labels"])),
            "--seed", str(o["seed"]), "--guidance", str(o["guidance"]), "--steps", str(o["steps"]),
            "--max-batch", str(o["max_batch"]), "--reward", "brightness", "--evaluator", "none",
            "--no-progress", "--out", str(out)]
    if o["budget"] is not None:
        argv += ["--nfe-budget", str(o["budget"])]
    if o["algorithm"] != "naive":
        argv += ["--N", str(o["N"])]
    if o["algorithm"] == "eps_greedy":
        argv += ["--K", "1", "--eps", str(o["eps"]), "--lambda", str(o["lambda_"])]
    return argv


def formula_nfe(o: dict) -> int:
    params = {} if o["algorithm"] == "naive" else {"N": o["N"]}
    if o["algorithm"] == "eps_greedy":
        params.update(K=1, eps=o["eps"], lambda_=o["lambda_"])
    per_call = 1 if o["guidance"] in (0.0, 1.0) else 2
    return get_algorithm(o["algorithm"], **params).nfe_formula(make_sampler("heun", o["steps"])) * per_call


@pytest.mark.filterwarnings("ignore::noisesearch.errors.NoiseSearchWarning")  # 1-2 step samplers search nothing
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(o=options())
def test_sample_options_run_or_fail_with_one_line_and_leave_nothing(o, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("sample") / "run"
    try:
        code = main(argv_of(o, out))
    except SystemExit as stop:  # argparse refuses unparsable values itself, with usage on stderr
        code = stop.code
    err = capsys.readouterr().err
    why = invalid_reason(o)
    assert "Traceback" not in err
    runs = why is None and (o["budget"] is None or o["budget"] >= formula_nfe(o))
    event("runs" if runs else f"refused: {why or 'over budget'}")
    if runs:
        assert code == 0, f"valid options refused: {err}"
        assert (out / "result.json").is_file()
    else:
        assert code != 0, f"accepted although {why or 'over budget'}"
        assert len(err.strip().splitlines()) == 1 and err.startswith("noisesearch")
        assert not out.exists()


# --- presets ---------------------------------------------------------------------------------------------------

values = st.one_of(st.none(), st.booleans(), st.integers(-3, 40), st.floats(allow_nan=True), st.text(max_size=4),
                   st.lists(st.integers(0, 3), max_size=3))
params = st.dictionaries(st.sampled_from(["N", "K", "B", "eps", "lambda_", "S", "M", "bogus"]), values, max_size=3)
runs = st.lists(st.one_of(
    st.fixed_dictionaries({"algorithm": st.sampled_from(["naive", "best_of_n", "eps_greedy", "beam", "nope"]),
                           "params": params}),
    values, st.dictionaries(st.sampled_from(["algorithm", "params"]), values, max_size=2)), max_size=3)
columns = st.lists(st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["a", "b"]), "reward": st.sampled_from(["brightness", "nope"]),
                           "guidance": st.sampled_from([0.0, 1.0, 2.5, math.nan, "x", True])}),
    values), max_size=3)
presets = st.fixed_dictionaries({"runs": runs, "rewards": columns},
                                optional={"labels": values, "repeats": values, "steps": values,
                                          "description": values})


@FAST
@given(data=st.one_of(presets, values, st.dictionaries(st.text(max_size=3), values, max_size=3)))
def test_preset_loader_returns_a_preset_or_a_one_line_error(data):
    try:
        preset = Preset.from_dict("generated", data)
    except NoiseSearchError as err:
        assert "\n" not in str(err)
        return
    assert preset.runs and preset.rewards and preset.labels >= 1 and preset.repeats >= 1
    assert len({c.name for c in preset.rewards}) == len(preset.rewards)
    assert all(math.isfinite(c.guidance) for c in preset.rewards)


# --- search schedules ------------------------------------------------------------------------------------------

VALID_PLAN = SearchSchedule.uniform(make_sampler("heun", 6), 2, 0.4, 2, gains=((0.1, 0.05),) * 4).to_dict()


@FAST
@given(key=st.sampled_from(sorted(VALID_PLAN)), value=values, data=st.data())
def test_schedule_loader_returns_a_schedule_or_a_one_line_error(key, value, data):
    schedule = dict(VALID_PLAN)
    if data.draw(st.booleans()):
        schedule[key] = value
    else:
        schedule[key] = [value] * len(schedule[key]) if isinstance(schedule[key], list) else value
    try:
        loaded = SearchSchedule.from_dict(schedule)
    except NoiseSearchError as err:
        assert "\n" not in str(err)
        return
    assert all(isinstance(k, int) and k >= 0 for k in loaded.K) and all(isinstance(n, int) and n >= 1 for n in loaded.N)
    assert all(0 <= e <= 1 for e in loaded.eps) and len(loaded.steps) == len(loaded.K)


# --- reward outputs --------------------------------------------------------------------------------------------

outputs = st.one_of(
    st.builds(lambda shape, dtype, fill: torch.full(shape, fill).to(dtype),
              st.sampled_from([(4,), (5,), (3,), (), (4, 1), (1, 4)]),
              st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool]),
              st.sampled_from([0.0, 1.0, math.nan, math.inf])),
    st.sampled_from([None, 0.5, [0.1, 0.2, 0.3, 0.4], np.zeros(4, dtype=np.float32), "high"]))


class Fixed:
    name = "fixed"

    def __init__(self, out):
        self.out = out

    def __call__(self, images, cond):
        return self.out


@pytest.fixture(scope="module")
def tiny():
    return tiny_denoiser()


@FAST
@given(out=outputs)
def test_reward_outputs_are_accepted_only_as_finite_float_tensors_of_one_score_per_image(tiny, out):
    problem = Problem(tiny, Fixed(out), torch.tensor([1, 2, 3, 4]), [0, 1, 2, 3], make_sampler("heun", 2),
                      max_batch=4)
    images = torch.zeros(4, 1, 1, 28, 28)
    fine = (isinstance(out, torch.Tensor) and out.shape == (4,) and out.dtype.is_floating_point
            and bool(torch.isfinite(out).all()))
    try:
        scores = problem.score_images(images)
    except NoiseSearchError as err:
        assert not fine and "reward 'fixed'" in str(err) and "\n" not in str(err)
        return
    assert fine and torch.equal(scores[:, 0], out)
