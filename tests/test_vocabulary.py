"""One vocabulary (nfe_budget a hard cap, target_nfe a schedule, names of their own for SMC's particles and inverse
temperature and SVDD's candidates): the old spellings still work for a release, each with one RenamedWarning per
process, and give the same results as the new ones."""

import json
import warnings
from dataclasses import asdict

import pytest
import torch
from test_search_toy import toy_problem

import noisesearch
from noisesearch import NoiseSearchError, get_algorithm, naming
from noisesearch.cli import main
from noisesearch.errors import RenamedWarning
from noisesearch.experiments.presets import Preset, builtin_presets, get_preset
from noisesearch.sampling import make_sampler
from noisesearch.search import canonical_params
from noisesearch.search.step_schedule import SearchSchedule


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch):
    """Each test sees the warnings a fresh process would (they are warned about once per process)."""
    monkeypatch.setattr(naming, "_WARNED", set())


def renamed_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, RenamedWarning)]


def test_canonical_params_maps_old_names_warns_once_and_leaves_its_argument_alone():
    old = {"K": 4, "lambda_": 10.0, "potential": "max"}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        new = canonical_params("smc", old)
        assert canonical_params("smc", old) == new  # the second time: no warning
    assert new == {"particles": 4, "inverse_temperature": 10.0, "potential": "max"}
    assert old == {"K": 4, "lambda_": 10.0, "potential": "max"}
    assert renamed_warnings(record) == [
        "algorithm 'smc': 'K' is now 'particles'; the old name works until the next release",
        "algorithm 'smc': 'lambda_' is now 'inverse_temperature'; the old name works until the next release"]
    assert canonical_params("eps_greedy", {"K": 4, "lambda_": 0.3}) == {"K": 4, "lambda_": 0.3}  # not renamed there
    with pytest.raises(NoiseSearchError, match="algorithm 'smc': give particles only \\('K' is its old name\\)"):
        canonical_params("smc", {"K": 4, "particles": 4})
    with pytest.raises(NoiseSearchError, match="unknown algorithm"):
        canonical_params("nope", {})


def test_renamed_warnings_are_future_warnings_shown_by_default():
    """A DeprecationWarning raised inside the library would be hidden by Python's default filters."""
    assert issubclass(RenamedWarning, FutureWarning) and not issubclass(RenamedWarning, DeprecationWarning)


@pytest.mark.parametrize("name, old, new", [
    ("smc", {"K": 3, "lambda_": 20.0, "resample_every": 1}, {"particles": 3, "inverse_temperature": 20.0,
                                                             "resample_every": 1}),
    ("svdd", {"M": 3}, {"candidates": 3}),
    ("rbf", {"max_nfe": 60, "init_particles": 2}, {"target_nfe": 60, "init_particles": 2}),
])
def test_old_parameter_names_give_bit_identical_results(name, old, new):
    with pytest.warns(RenamedWarning):
        before = get_algorithm(name, **old)
    after = get_algorithm(name, **new)
    assert before == after
    a, b = before.run(toy_problem(4)), after.run(toy_problem(4))
    assert torch.equal(a.images, b.images) and torch.equal(a.rewards, b.rewards) and torch.equal(a.nfe, b.nfe)


def test_search_takes_old_smc_names_as_keywords():
    args = dict(algorithm="smc", reward="brightness", labels=[3], steps=6, evaluator=None, progress=False)
    with pytest.warns(RenamedWarning, match="'K' is now 'particles'"):
        old = noisesearch.search(**args, K=2)
    new = noisesearch.search(**args, particles=2)
    assert torch.equal(old.images, new.images) and old.config["params"] == new.config["params"]


def run_sample(tmp_path, name, *flags):
    out = tmp_path / name
    assert main(["sample", "--labels", "3", "--steps", "6", "--reward", "brightness", "--evaluator", "none",
                 "--no-progress", "--out", str(out), *flags]) == 0
    return json.loads((out / "result.json").read_text())


def test_sample_budget_and_lambda_flags_are_old_spellings_of_nfe_budget_and_lambda(tmp_path):
    search = ["--algorithm", "eps_greedy", "--N", "2", "--K", "1"]
    with pytest.warns(RenamedWarning) as record:
        old = run_sample(tmp_path, "old", *search, "--budget", "100", "--lambda_", "0.3")
    assert renamed_warnings(record) == [
        "noisesearch sample: '--budget' is now '--nfe-budget'; the old name works until the next release",
        "noisesearch sample: '--lambda_' is now '--lambda'; the old name works until the next release"]
    new = run_sample(tmp_path, "new", *search, "--nfe-budget", "100", "--lambda", "0.3")
    for key in ("images", "nfe_per_image", "mean_reward"):  # images: each one's reward and NFE
        assert old[key] == new[key], key
    assert old["config"]["nfe_budget"] == new["config"]["nfe_budget"] == 100
    assert old["config"]["params"]["lambda_"] == 0.3


def test_sample_budget_flag_is_still_a_hard_cap(tmp_path, capsys):
    with pytest.warns(RenamedWarning):
        code = main(["sample", "--algorithm", "best_of_n", "--N", "2", "--labels", "3", "--steps", "6", "--budget",
                     "10", "--out", str(tmp_path / "o")])
    assert code == 1 and "hard budget of 10" in capsys.readouterr().err


def test_sample_takes_old_algorithm_parameter_flags(tmp_path):
    with pytest.warns(RenamedWarning, match="algorithm 'smc': 'K' is now 'particles'"):
        old = run_sample(tmp_path, "old", "--algorithm", "smc", "--K", "2")
    new = run_sample(tmp_path, "new", "--algorithm", "smc", "--particles", "2")
    assert old["images"] == new["images"] and old["config"]["params"] == new["config"]["params"]


def test_a_preset_file_with_old_names_loads_as_the_new_ones(tmp_path):
    preset = {"labels": 2, "steps": 4, "budgets": [14], "rewards": [{"name": "brightness", "reward": "brightness"}],
              "runs": [{"algorithm": "smc", "params": {"K": 2, "lambda_": 5.0}},
                       {"algorithm": "rbf", "params": {"max_nfe": 14, "init_particles": 1}}]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"old": preset}))
    with pytest.warns(RenamedWarning) as record:
        loaded = get_preset(str(path))
    assert loaded.target_nfes == (14,)
    assert [run.params for run in loaded.runs] == [{"particles": 2, "inverse_temperature": 5.0},
                                                   {"target_nfe": 14, "init_particles": 1}]
    assert renamed_warnings(record)[0] == ("bench preset: 'budgets' is now 'target_nfes'; the old name works until "
                                           "the next release")
    both = {**preset, "runs": [{"algorithm": "smc", "params": {"K": 2, "particles": 2}}]}
    with pytest.raises(NoiseSearchError, match="preset 'both': algorithm 'smc': give particles only"):
        Preset.from_dict("both", both)


def test_a_run_directorys_stored_preset_with_old_names_loads_as_the_new_one():
    """What bench wrote to preset.json (Preset.to_dict) before the rename, read back as `report` reads it."""
    families = builtin_presets()["families"]
    stored = asdict(families)
    stored["budgets"] = stored.pop("target_nfes")
    renames = {"smc": {"particles": "K", "inverse_temperature": "lambda_"}, "svdd": {"candidates": "M"},
               "rbf": {"target_nfe": "max_nfe"}}
    for run in stored["runs"]:
        run["params"] = {renames.get(run["algorithm"], {}).get(k, k): v for k, v in run["params"].items()}
    with pytest.warns(RenamedWarning):
        assert Preset.from_dict(stored["name"], json.loads(json.dumps(stored))) == families


def test_a_schedule_file_of_format_1_loads_its_budget_as_target_nfe_and_code_spelling_budget_warns(tmp_path):
    sampler = make_sampler("heun", 6)
    path = tmp_path / "old.json"
    gains = ((0.1, 0.05),) * len(sampler.searchable_steps())
    old = SearchSchedule.uniform(sampler, 2, 0.4, 2, gains=gains, info={"B": 2, "target_nfe": 60}).to_dict()
    old["info"], old["format"] = {"B": 2, "budget": 60}, "noisesearch.search_schedule/1"
    path.write_text(json.dumps(old))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RenamedWarning)  # a stored file is migrated, not warned about
        loaded = SearchSchedule.load(path)
    assert loaded.info == {"B": 2, "target_nfe": 60} and loaded.to_dict()["format"] == "noisesearch.search_schedule/2"
    with pytest.warns(RenamedWarning, match="search schedule info: 'budget' is now 'target_nfe'"):
        assert SearchSchedule.uniform(sampler, 2, 0.4, 2, gains=gains, info={"budget": 60}).info == {"target_nfe": 60}
    algo = get_algorithm("adaptive_eps_greedy", search_schedule=str(path), target_nfe=30)
    assert algo.B == 1  # schedule_beam reads the validation's target_nfe: floor(2 · 30 / 60)
