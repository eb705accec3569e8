"""Hostile and clumsy input: non-finite values never win a search, rewards and denoisers are checked, budgets
fail before spending, and the command line answers every mistake with one line."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_problem

from noisesearch import BudgetExceeded, DenoiserBase, NoiseSearchError, Problem, get_algorithm, get_reward, make_sampler
from noisesearch.adaptive import CalibrationConfig
from noisesearch.cli import main
from noisesearch.errors import NoiseSearchWarning
from noisesearch.outputs import write_result
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import SearchResult

CLI = [sys.executable, "-m", "noisesearch.cli"]


class NaNOnLabel(DenoiserBase):
    """The exact Gaussian denoiser, but NaN on the rows whose label is `bad` at sigma below `below`."""

    image_shape = (1, 8, 8)

    def __init__(self, bad: int = 3, below: float = 1.0) -> None:
        self.bad, self.below = bad, below

    def __call__(self, x, sigma, cond):
        out = x * 0.25 / (sigma.reshape(-1, 1, 1, 1) ** 2 + 0.25)
        poison = (cond == self.bad) & (sigma < self.below)
        return torch.where(poison[:, None, None, None], torch.full_like(out, float("nan")), out)


def toy_problem(denoiser, reward="brightness", labels=(1, 3), **kwargs):
    return Problem(denoiser, get_reward(reward), torch.tensor(labels), list(range(len(labels))),
                   make_sampler("heun", 6), **kwargs)


def test_a_denoiser_returning_nan_on_some_rows_is_named_with_its_step_and_sigma():
    with pytest.raises(NoiseSearchError, match=r"denoiser returned NaN or inf at sampler step \d+ \(sigma"):
        get_algorithm("eps_greedy", N=2, K=2).run(toy_problem(NaNOnLabel()))


def test_nan_images_are_blamed_on_the_denoiser_not_on_the_classifier_reward():
    class Digits(NaNOnLabel):
        image_shape = (1, 28, 28)

    with pytest.raises(NoiseSearchError, match="denoiser returned NaN") as err:
        get_algorithm("best_of_n", N=2).run(toy_problem(Digits(), reward="classifier"))
    assert "reward" not in str(err.value).split(":")[0]


@pytest.mark.parametrize("argv, message", [
    (["--guidance", "nan", "--reward", "compressibility"], "guidance must be a finite number"),
    (["--guidance", "inf"], "guidance must be a finite number"),
    (["--algorithm", "eps_greedy", "--lambda", "inf"], "lambda_ must be a positive finite number"),
    (["--algorithm", "eps_greedy", "--eps", "nan"], "eps must lie in [0, 1]"),
    (["--algorithm", "mcts", "--c_uct", "inf"], "c_uct must be a non-negative finite number"),
])
def test_non_finite_settings_are_refused_before_anything_runs(argv, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", "--out", str(out), "--no-progress", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()  # a failed validation leaves no directory behind


class Scores:
    """A reward returning `make(images)` instead of one float per image."""

    name = "odd"

    def __init__(self, make):
        self.make = make

    def __call__(self, images, cond):
        return self.make(images)


@pytest.mark.parametrize("make", [
    lambda im: torch.zeros(im.shape[0] + 1),  # more values than images: was silently truncated
    lambda im: torch.tensor(0.5),
    lambda im: [0.5] * im.shape[0],
    lambda im: np.zeros(im.shape[0], dtype=np.float32),
    lambda im: None,
    lambda im: torch.zeros(im.shape[0], dtype=torch.long),
    lambda im: torch.zeros(im.shape[0], 1),
])
def test_reward_outputs_of_the_wrong_type_or_shape_are_named(denoiser, make):
    problem = Problem(denoiser, Scores(make), torch.tensor([1, 2]), [0, 1], make_sampler("heun", 4))
    with pytest.raises(NoiseSearchError, match=r"reward 'odd' returned .* float tensor of shape \(2,\)"):  # 2 real rows
        get_algorithm("naive").run(problem)


@pytest.mark.parametrize("per_call", [0, -1, 1.5, True])
def test_a_denoiser_with_a_bad_nfe_per_call_is_refused(per_call):
    toy = NaNOnLabel()
    toy.nfe_per_call = per_call
    with pytest.raises(NoiseSearchError, match="nfe_per_call must be an integer of at least 1"):
        toy_problem(toy, nfe_budget=10)


def test_a_budget_below_the_formula_fails_before_the_first_call(denoiser):
    problem = make_problem(denoiser, [1, 2], [0, 1], steps=18, nfe_budget=1000)
    with pytest.raises(BudgetExceeded, match="needs 1062 NFE per image by its formula, over the hard budget of 1000"):
        get_algorithm("eps_greedy", N=4, K=20).run(problem)
    assert problem.nfe.tolist() == [0, 0]


@pytest.mark.parametrize("moves, message", [
    ([(0, 5.0, -1.0)], "N must be an integer of at least 1"),
    ([(1, 5.0, 0.3)], "eps must lie in"),
    ([(1, 0.2, -1.0)], "lambda_ must be a positive"),
])
def test_calibration_settings_are_checked_before_any_probe(moves, message):
    with pytest.raises(NoiseSearchError, match=message):
        CalibrationConfig(moves=moves)


def test_strict_json_refuses_nan_in_results(tmp_path):
    result = SearchResult(images=torch.zeros(1, 1, 4, 4), rewards=torch.tensor([float("nan")]),
                          nfe=torch.tensor([35]), wall_time=0.1,
                          config={"algorithm": "naive", "reward": "r", "labels": [1], "seeds": [0]})
    with pytest.raises(NoiseSearchError, match="NaN or inf"):
        write_result(result, tmp_path / "out")
    assert not (tmp_path / "out" / "result.json").exists()


def test_schedule_files_that_are_not_utf8_or_not_an_object_or_with_fractional_K_are_one_line(tmp_path):
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(NoiseSearchError, match="not UTF-8"):
        SearchSchedule.load(binary)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2, 3]")
    with pytest.raises(NoiseSearchError, match="not a search schedule"):
        SearchSchedule.load(listed)
    schedule = SearchSchedule.uniform(make_sampler("heun", 6), 2, 0.4, 2).to_dict()
    schedule["K"][0] = 2.7  # was truncated to 2
    with pytest.raises(NoiseSearchError, match="K entries must be whole numbers, got 2.7"):
        SearchSchedule.from_dict(schedule)
    schedule["K"][0] = 3.0
    assert SearchSchedule.from_dict(schedule).K[0] == 3


def test_a_search_over_a_sampler_without_noise_warns(denoiser):
    with pytest.warns(NoiseSearchWarning, match="injects noise at none of its 2 steps"):
        get_algorithm("eps_greedy", N=2, K=2).run(make_problem(denoiser, [1], [0], steps=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_algorithm("naive").run(make_problem(denoiser, [1], [0], steps=2))  # nothing to search: no warning


def test_an_unwritable_images_folder_is_found_before_the_search(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "images").write_text("a file where the images folder should be")
    started = time.perf_counter()
    assert main(["sample", "--out", str(out), "--overwrite", "--algorithm", "best_of_n", "--N", "64",
                 "--no-progress"]) == 1
    assert time.perf_counter() - started < 5  # refused before 64 trajectories
    assert "cannot write to --out" in capsys.readouterr().err


def test_an_empty_out_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--out", ""])
    assert "the path is empty" in capsys.readouterr().err


def test_a_closed_pipe_is_not_a_traceback():
    listing = subprocess.Popen([*CLI, "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    listing.stdout.close()  # the reader leaves at once, as `noisesearch list | true`
    err = listing.stderr.read().decode()
    listing.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_device_on_stdout_is_one_line():
    with open("/dev/full", "w") as full:
        done = subprocess.run([*CLI, "list"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("noisesearch: cannot write output") and "Traceback" not in done.stderr


def test_sigterm_ends_a_run_with_one_line(tmp_path):
    run = subprocess.Popen([*CLI, "sample", "--algorithm", "best_of_n", "--N", "64", "--out", str(tmp_path / "r")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = b""
    while b"NFE" not in seen:  # the progress bar shows that the search is running
        chunk = os.read(run.stderr.fileno(), 256)
        assert chunk, "the run ended before it started searching"
        seen += chunk
    run.send_signal(signal.SIGTERM)
    _, rest = run.communicate(timeout=60)
    err = (seen + rest).decode()
    assert run.returncode != 0 and "Traceback" not in err
    assert err.rstrip().endswith(f"noisesearch: terminated by signal {int(signal.SIGTERM)}")


def test_result_json_stays_strict_for_a_normal_run(tmp_path, denoiser):
    from noisesearch import search

    result = search(algorithm="naive", reward="brightness", labels=[1], denoiser=denoiser, steps=4, evaluator=None)
    write_result(result, tmp_path / "ok")
    json.loads((tmp_path / "ok" / "result.json").read_text(), parse_constant=lambda c: pytest.fail(c))


def test_a_long_run_prints_its_estimate_and_a_longer_one_needs_yes(tmp_path, capsys, monkeypatch):
    import noisesearch.cli as cli

    monkeypatch.setattr(cli, "ESTIMATE_MIN_NFE", 0)
    monkeypatch.setattr(cli, "CONFIRM_ESTIMATE_S", 0.0)
    monkeypatch.setattr(cli, "SHOW_ESTIMATE_S", 0.0)
    argv = ["sample", "--algorithm", "best_of_n", "--N", "2", "--labels", "1,2", "--steps", "3", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "refused")]) == 1
    err = capsys.readouterr().err
    assert "this run needs about 10 NFE per image, 20 in all" in err and "pass --yes" in err
    assert not (tmp_path / "refused").exists()
    assert main([*argv, "--out", str(tmp_path / "run"), "--yes"]) == 0
    assert "noisesearch: about 10 NFE per image, 20 in all" in capsys.readouterr().err


def test_the_estimate_counts_the_formula_with_guidance():
    from noisesearch.api import plan_search

    planned = plan_search(algorithm="eps_greedy", reward="brightness", labels=[1, 2, 3], guidance=2.0, N=2, K=3)
    estimate = planned.estimate()
    assert estimate.nfe_per_image == 2 * planned.algorithm.nfe_formula(planned.problem.sampler)
    assert estimate.nfe_total == 3 * estimate.nfe_per_image and estimate.seconds > 0
    weights = sum(p.numel() * 4 for p in planned.problem.denoiser.model.parameters()) / 2**20
    assert weights <= estimate.model_mb < weights + 1 and estimate.call_mb >= 0
    assert planned.problem.nfe.sum() == 0  # estimating spends no metered NFE


@pytest.mark.parametrize("device, message", [("cuda", "not available on this machine"),
                                             ("gpu7", "unknown device 'gpu7'")])
def test_a_device_the_machine_lacks_is_one_line_not_silently_ignored(device, message, tmp_path, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["sample", "--device", device, "--out", str(tmp_path / "run"), "--no-progress"]) == 1
    assert message in capsys.readouterr().err


def test_typed_reward_arguments_reach_the_reward_and_the_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sample", "--reward", "compressibility", "--reward-arg", "quality=95", "--steps", "3",
                 "--no-progress", "--out", str(out)]) == 0
    assert json.loads((out / "result.json").read_text())["config"]["reward_args"] == {"quality": 95}


def test_a_small_run_spends_no_timed_call_on_its_estimate(tmp_path, monkeypatch):
    import noisesearch.cli as cli
    from noisesearch.api import PlannedSearch

    monkeypatch.setattr(cli, "SHOW_ESTIMATE_S", 0.0)
    monkeypatch.setattr(PlannedSearch, "estimate", lambda self: pytest.fail("a 35-NFE run was timed"))
    assert main(["sample", "--labels", "1", "--no-progress", "--out", str(tmp_path / "run")]) == 0


def test_bench_and_calibrate_loaders_refuse_non_finite_guidance_too():
    from noisesearch.backends import load_backend_denoiser

    with pytest.raises(NoiseSearchError, match="guidance must be a finite number, got nan"):
        load_backend_denoiser("embedded", guidance=float("nan"))
