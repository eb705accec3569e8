"""Property-based tests (hypothesis): generated command lines, presets, schedules and reward outputs never
give a traceback, never slip an invalid value through, and a failed `sample` writes nothing."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from noisesearch import NoiseSearchError, Problem, get_algorithm, make_problem, make_sampler, search
from noisesearch.checks import shown
from noisesearch.cli import main
from noisesearch.experiments.presets import Preset
from noisesearch.search import algorithm_class, algorithm_names
from noisesearch.search.base import PARAM_TYPES
from noisesearch.search.registry import algorithm_params
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


# --- the Python API's arguments (issue 33) ---------------------------------------------------------------------

WILD = st.one_of(  # wrong-typed and out-of-range values of any argument
    st.sampled_from([None, True, False, np.bool_(True), "", "no", "yes", "true", "4", "auto", "heun", "cpu",
                     0, 1, 2, -1, 10**12, 2**63, 0.0, 0.5, 2.0, -0.5, 1e308, 1e-308, math.nan, math.inf, -math.inf,
                     [], [1], [[1, 2]], [1.0], [True], ["a"], (2, 3), {"a": 1}, {}]),
    st.builds(torch.tensor, st.sampled_from([[1], [1, 2], [1.5], [[1]], [True], 3])),
    st.builds(np.array, st.sampled_from([[1], [2.5], [[1, 2]]])),
    st.integers(-3, 12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3))


def integer(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def flag_on(v) -> bool:
    return isinstance(v, (bool, np.bool_)) and bool(v)


def one_of(v, *choices: str) -> bool:
    return isinstance(v, str) and v in choices


def class_labels(v) -> list | None:
    """The labels as a list if `v` is a valid label argument for the tiny MNIST model, else None."""
    if isinstance(v, torch.Tensor):
        ok = v.ndim == 1 and not v.dtype.is_floating_point and v.dtype != torch.bool
        v = v.tolist() if ok else None
    elif isinstance(v, np.ndarray):
        v = v.tolist() if v.ndim == 1 and v.dtype.kind in "iu" else None
    if not isinstance(v, (list, tuple)) or not v or not all(integer(x) and 0 <= x <= 9 for x in v):
        return None
    return list(v)


def problem_refusal(a: dict) -> str | None:
    """Why make_problem must refuse the arguments `a` (None: it must build the Problem)."""
    labels = class_labels(a["labels"])
    n = len(labels or [])
    seeds = a["seeds"]
    sampler_object = not isinstance(a["sampler"], (str, type(None)))
    flags = ("batch_invariant", "compile", "trust_model_code")
    checks = [
        ("reward", not (one_of(a["reward"], "brightness") or callable(a["reward"]))),
        ("labels", labels is None),
        ("seed", a["seed"] is not None and not (integer(a["seed"]) and 0 <= a["seed"] <= MAX_SEED - n + 1)),
        ("seeds", seeds is not None and (not isinstance(seeds, (list, tuple)) or len(seeds) != n
                                         or not all(integer(s) and 0 <= s <= MAX_SEED for s in seeds))),
        ("seed and seeds", a["seed"] is not None and seeds is not None),
        ("steps", a["steps"] is not None and not (integer(a["steps"]) and 1 <= a["steps"] <= 10_000)),
        ("steps with a Sampler", a["steps"] is not None and sampler_object),
        ("sampler", not (a["sampler"] is None or one_of(a["sampler"], "heun", "euler")
                         or sampler_object and hasattr(a["sampler"], "sigmas"))),
        ("flags", not all(isinstance(a[k], (bool, np.bool_)) for k in flags)),
        ("max_batch", not (integer(a["max_batch"]) and 1 <= a["max_batch"] <= 65_536
                           or isinstance(a["max_batch"], str) and a["max_batch"].isascii() and a["max_batch"].isdigit()
                           and 1 <= int(a["max_batch"]) <= 65_536
                           or one_of(a["max_batch"], "auto") and not flag_on(a["batch_invariant"]))),
        ("compile with a denoiser", flag_on(a["compile"])),
        ("nfe_budget", a["nfe_budget"] is not None and not (isinstance(a["nfe_budget"], int)
                                                            and not isinstance(a["nfe_budget"], bool)
                                                            and a["nfe_budget"] >= 1)),
        ("progress", not (isinstance(a["progress"], (bool, np.bool_)) or callable(a["progress"]))),
        ("guidance", a["guidance"] is not None and not (number(a["guidance"]) and math.isfinite(a["guidance"]))),
        ("device", not one_of(a["device"], "cpu")),
        ("dtype", not one_of(a["dtype"], "float32", "float16", "bfloat16")),
        ("reward_args", not (a["reward_args"] is None or isinstance(a["reward_args"], dict) and not a["reward_args"])),
        ("backend", not one_of(a["backend"], "embedded")),
        ("model with a denoiser", a["model"] is not None),
    ]
    return next((why for why, bad in checks if bad), None)


PROBLEM_ARGS = {  # valid values of each argument of make_problem (the tiny denoiser is given as `denoiser`)
    "reward": st.sampled_from(["brightness", "a callable"]),
    "labels": st.sampled_from([[1], [0, 9], (3,), torch.tensor([2, 4]), np.array([5])]),
    "seed": st.sampled_from([None, 0, 7]),
    "seeds": st.just(None),
    "steps": st.sampled_from([None, 4, 5]),
    "sampler": st.sampled_from([None, "heun", "euler"]),
    "max_batch": st.sampled_from([2, 16, "auto", "8"]),
    "batch_invariant": st.just(False),
    "compile": st.just(False),
    "trust_model_code": st.sampled_from([False, True]),
    "nfe_budget": st.sampled_from([None, 500]),
    "progress": st.just(False),
    "guidance": st.sampled_from([None, 1.0, 2]),
    "device": st.just("cpu"),
    "dtype": st.just("float32"),
    "reward_args": st.just(None),
    "backend": st.just("embedded"),
    "model": st.just(None),
}


@st.composite
def problem_args(draw) -> dict:
    """Valid make_problem arguments with up to three replaced by wild values (or a Sampler object, seeds)."""
    args = {name: draw(strategy) for name, strategy in PROBLEM_ARGS.items()}
    if args["reward"] == "a callable":
        args["reward"] = Fixed(torch.zeros(0))  # a reward object (make_problem never calls it)
    for name in draw(st.lists(st.sampled_from(sorted(PROBLEM_ARGS)), max_size=3, unique=True)):
        if name == "sampler" and draw(st.booleans()):
            args[name] = make_sampler("heun", 4)
        elif name == "seeds" and draw(st.booleans()):
            args[name] = draw(st.lists(st.integers(-1, 3), max_size=3))
        else:
            args[name] = draw(WILD)
    return args


@settings(max_examples=400, deadline=None, derandomize=True)
@given(a=problem_args())
def test_make_problem_builds_or_refuses_in_one_line_and_never_accepts_an_invalid_argument(tiny, a):
    why = problem_refusal(a)
    try:
        problem, config = make_problem(denoiser=tiny, **a)
    except NoiseSearchError as err:
        assert "\n" not in str(err) and str(err), repr(err)
        assert why is not None, f"valid arguments refused: {err} ({shown(a, 400)})"
        event(f"refused: {why}")
        return
    assert why is None, f"accepted although {why}: {shown(a, 400)}"
    assert problem.cond.tolist() == class_labels(a["labels"]) and isinstance(problem.batch_invariant, bool)
    event("built")


ALGORITHM_PARAMS = ["N", "K", "B", "eps", "lambda_", "elitism", "score_with", "search_schedule", "c_uct",
                    "inverse_temperature", "ess_threshold", "beta", "alpha", "min_gain", "target_nfe",
                    "learn_steps", "sigma_start", "candidates", "particles", "bogus"]


def param_refusal(name: str, params: dict) -> str | None:
    """A reason that get_algorithm must refuse `params`, or None where either outcome may be right (the field
    types every algorithm shares, and the ranges of N, K, B, eps and lambda_)."""
    accepted = algorithm_params(name)
    if set(params) - set(accepted):
        return "unknown parameter"
    types = {f.name: f.type for f in dataclasses.fields(algorithm_class(name)) if f.init}
    for key, value in params.items():
        text = types[key] if isinstance(types[key], str) else getattr(types[key], "__name__", "")
        optional = text.endswith(" | None")
        kind = PARAM_TYPES.get(text.removesuffix(" | None"))
        if kind is not None and not (optional and value is None) and not kind[0](value):
            return f"{key} type"
        if key in ("N", "K") and not (integer(value) and value >= 1):
            return key
        if key == "B" and value is not None and not (integer(value) and value >= 1):
            return key
        if key == "eps" and not (number(value) and 0 <= value <= 1):
            return key
        if key == "lambda_" and value is not None and not (number(value) and math.isfinite(value) and value > 0):
            return key
        if key == "search_schedule" and value is not None:
            return "search_schedule (not a schedule or an existing file)"
    return None


@FAST
@given(name=st.sampled_from(sorted(set(algorithm_names()) - {"adaptive_eps_greedy"})),
       params=st.dictionaries(st.sampled_from(ALGORITHM_PARAMS), WILD, max_size=3))
def test_get_algorithm_builds_or_refuses_in_one_line(name, params):
    why = param_refusal(name, params)
    try:
        get_algorithm(name, **params)
    except NoiseSearchError as err:
        assert "\n" not in str(err) and str(err)
        event("refused")
        return
    assert why is None, f"{name} accepted {shown(params, 200)} although {why}"
    event("built")


SAMPLER_SETTINGS = {"heun": ["rho", "sigma_min", "sigma_max", "S_churn", "S_min", "S_max", "S_noise", "bogus"],
                    "flow_euler": ["shift", "t_min", "t_max", "S_churn", "S_noise", "bogus"]}


def sampler_refusal(name: object, steps: object, s: dict) -> str | None:
    if name not in ("heun", "euler", "flow_euler"):
        return "name"
    if not (integer(steps) and 1 <= steps <= 10_000):
        return "steps"
    if "bogus" in s:
        return "unknown setting"
    if not all(number(v) and (math.isfinite(v) or k == "S_max" and v == math.inf) for k, v in s.items()):
        return "not a finite number"
    churn = {"S_churn": 40.0, "S_min": 0.05, "S_max": 50.0, "S_noise": 1.0} | s
    if churn["S_churn"] < 0 or churn["S_min"] < 0 or churn["S_noise"] <= 0 or churn["S_max"] < churn["S_min"]:
        return "churn range"
    if name != "flow_euler":
        k = {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0} | s
        if not (0 < k["sigma_min"] < k["sigma_max"] and k["rho"] > 0):
            return "schedule range"
    return None  # extreme but in range: may be refused for sigmas that overflow or round to 0


@FAST
@given(name=st.sampled_from(["heun", "euler", "flow_euler", "nope", 5, None]),
       steps=st.one_of(st.integers(1, 8), WILD), data=st.data())
def test_make_sampler_builds_a_finite_schedule_or_refuses_in_one_line(name, steps, data):
    keys = SAMPLER_SETTINGS["flow_euler" if name == "flow_euler" else "heun"]
    settings_ = data.draw(st.dictionaries(st.sampled_from(keys), WILD, max_size=2))
    why = sampler_refusal(name, steps, settings_)
    try:
        sampler = make_sampler(name, steps, **settings_)
    except NoiseSearchError as err:
        assert "\n" not in str(err) and str(err)
        event("refused")
        return
    assert why is None, f"make_sampler({name!r}, {shown(steps)}, {shown(settings_)}) accepted although {why}"
    step_sigmas = sampler.sigmas[:-1]
    assert bool((torch.isfinite(step_sigmas) & (step_sigmas > 0)).all()) and sampler.steps == steps
    assert bool(torch.isfinite(sampler.sigma_hats).all())
    event("built")


@pytest.mark.filterwarnings("ignore::noisesearch.errors.NoiseSearchWarning")
@settings(max_examples=40, deadline=None, derandomize=True)
@given(algorithm=st.sampled_from(["naive", "best_of_n", "eps_greedy"]),
       wild=st.dictionaries(st.sampled_from(["N", "K", "eps", "elitism", "labels", "seed", "nfe_budget", "steps",
                                             "batch_invariant", "progress"]), WILD, max_size=2))
def test_search_runs_or_refuses_in_one_line(tiny, algorithm, wild):
    args = {"N": 2, "K": 1} if algorithm == "eps_greedy" else {"N": 2} if algorithm == "best_of_n" else {}
    args |= {"labels": [1], "seed": 0, "nfe_budget": 400, "steps": 4, "batch_invariant": False, "progress": False}
    args |= {k: v for k, v in wild.items() if k in args or k in ("eps", "elitism") and algorithm == "eps_greedy"
             or k in ("N",) and algorithm != "naive"}
    a = dict(PROBLEM_ARGS_VALID) | {k: args[k] for k in PROBLEM_ARGS_VALID if k in args}
    why = problem_refusal(a) or param_refusal(algorithm, {k: v for k, v in args.items() if k not in PROBLEM_ARGS})
    try:
        result = search(algorithm=algorithm, reward="brightness", evaluator=None, denoiser=tiny, **args)
    except NoiseSearchError as err:  # a budget refusal (BudgetExceeded) of a huge N or K comes before any call
        assert "\n" not in str(err) and str(err)
        assert why is not None or type(err).__name__ == "BudgetExceeded", f"refused valid arguments: {err}"
        event("refused")
        return
    assert why is None, f"search accepted {shown(args, 200)} although {why}"
    assert result.images.shape[0] == len(class_labels(args["labels"]))
    event("ran")


PROBLEM_ARGS_VALID = {"reward": "brightness", "labels": [1], "seed": 0, "seeds": None, "steps": 4, "sampler": None,
                      "max_batch": 16, "batch_invariant": False, "compile": False, "trust_model_code": False,
                      "nfe_budget": None, "progress": False, "guidance": None, "device": "cpu", "dtype": "float32",
                      "reward_args": None, "backend": "embedded", "model": None}


def online_refusal(a: dict) -> str | None:
    """Why these search_online arguments are certainly invalid (None: they may run, or be refused by the budget)."""
    if not integer(a["target_nfe"]) or a["target_nfe"] < 1:
        return "target_nfe is not a positive integer"
    if not integer(a["batch"]) or a["batch"] < 1:
        return "batch is not a positive integer"
    if not number(a["prior_weight"]) or not math.isfinite(a["prior_weight"]) or a["prior_weight"] <= 0:
        return "prior_weight is not a positive finite number"
    if not isinstance(a["credit"], str) or a["credit"] not in ("survival", "x0"):
        return "credit is not survival or x0"
    if not isinstance(a["learn_steps"], (bool, np.bool_)):
        return "learn_steps is not a boolean"
    return None


@pytest.mark.filterwarnings("ignore::noisesearch.errors.NoiseSearchWarning")
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wild=st.dictionaries(st.sampled_from(["target_nfe", "batch", "prior_weight", "credit", "learn_steps"]),
                            WILD.filter(lambda v: not (isinstance(v, int) and v > 1000)), max_size=2))
def test_search_online_runs_or_refuses_in_one_line_and_writes_no_state_on_refusal(tiny, wild, tmp_path_factory):
    from noisesearch import search_online

    a = {"target_nfe": 40, "batch": 2, "prior_weight": 4.0, "credit": "x0", "learn_steps": False} | wild
    why = online_refusal(a)
    folder = tmp_path_factory.mktemp("online")
    try:
        result = search_online(state=folder / "s.json", reward="brightness", evaluator=None, denoiser=tiny,
                               labels=[1, 2], steps=4, **a)
    except NoiseSearchError as err:
        assert "\n" not in str(err) and str(err)
        assert why is not None or type(err).__name__ == "BudgetExceeded" or "target_nfe" in str(err), \
            f"refused valid arguments: {err}"
        assert sorted(p.name for p in folder.iterdir()) == [], "a refused run left files behind"
        event("refused")
        return
    assert why is None, f"search_online accepted {shown(a, 200)} although {why}"
    assert result.images.shape[0] == 2 and (folder / "s.json").is_file()
    event("ran")
