"""Checks of the drivers and the command line (issue 33): every user mistake is a one-line NoiseSearchError
raised before the compute it guards. Each test makes that compute fail loudly, so a check that runs after it
(as each did before) fails the test with an AssertionError rather than the expected error."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
from test_contract import TINY_PLAN

from noisesearch import NoiseSearchError
from noisesearch.cli import main
from noisesearch.errors import BudgetExceeded


def refuse_compute(monkeypatch: pytest.MonkeyPatch, *targets: str) -> None:
    """Replace each target with a function that fails the test if the compute it stands for starts."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the check ran after the compute it guards")

    for target in targets:  # "module:attribute" where a package attribute shadows its module of the same name
        if ":" in target:
            module, name = target.split(":")
            monkeypatch.setattr(importlib.import_module(module), name, refuse)
        else:
            monkeypatch.setattr(target, refuse)


def one_line_error(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_an_unknown_evaluator_is_refused_before_the_model_loads(denoiser, monkeypatch):
    from noisesearch.api import resolve_evaluator, search

    refuse_compute(monkeypatch, "noisesearch.api.make_problem")
    with pytest.raises(NoiseSearchError, match="unknown evaluator 'nosuch': choose a reward"):
        search(reward="brightness", labels=[0], denoiser=denoiser, steps=3, evaluator="nosuch")
    with pytest.raises(NoiseSearchError, match="evaluator must be a reward name, 'auto' or None, got a int"):
        search(reward="brightness", labels=[0], denoiser=denoiser, steps=3, evaluator=3)
    with pytest.raises(NoiseSearchError, match="unknown evaluator 'nosuch'"):  # what search_online resolves
        resolve_evaluator("nosuch", {"backend": "embedded"})
    assert resolve_evaluator("auto", {"backend": "embedded"}) == "evaluator"


def test_sample_with_an_unknown_evaluator_fails_in_one_line_and_leaves_no_output(tmp_path, monkeypatch, capsys):
    refuse_compute(monkeypatch, "noisesearch.api.make_problem")
    out = tmp_path / "o"
    assert main(["sample", "--evaluator", "nosuch", "--steps", "3", "--no-progress", "--out", str(out)]) == 1
    assert "unknown evaluator 'nosuch'" in one_line_error(capsys) and not out.exists()


@pytest.mark.parametrize("where, message", [("file", "f.txt is a file: give a directory"),
                                            ("under", "is under {blocker}, which is a file")])
def test_reliability_out_that_is_or_sits_under_a_file_is_refused_before_measuring(where, message, tmp_path,
                                                                                   monkeypatch, capsys):
    refuse_compute(monkeypatch, "noisesearch.cli.measure_reliability")
    blocker = tmp_path / "f.txt"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "r"
    assert main(["reliability", "--rewards", "brightness", "--no-progress", "--out", str(out)]) == 1
    assert message.format(blocker=blocker) in one_line_error(capsys) and blocker.read_text() == "x"


@pytest.mark.parametrize("rewards, message", [(["brightness", "nosuch"], "unknown reward 'nosuch'"),
                                              (["brightness", "evaluator"], "reward 'evaluator' is scoring-only")])
def test_every_reward_name_is_checked_before_the_first_probe(rewards, message, denoiser, monkeypatch):
    from noisesearch.drivers.reliability import measure_reliability

    refuse_compute(monkeypatch, "noisesearch.drivers.reliability.probe_reliability")
    with pytest.raises(NoiseSearchError, match=message):
        measure_reliability(rewards, conditions=2, steps=3, denoiser=denoiser)


def test_reliability_with_an_unknown_reward_fails_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    refuse_compute(monkeypatch, "noisesearch.drivers.reliability.probe_reliability")
    out = tmp_path / "r"
    assert main(["reliability", "--rewards", "brightness,nosuch", "--steps", "3", "--no-progress",
                 "--out", str(out)]) == 1
    assert "unknown reward 'nosuch'" in one_line_error(capsys) and not out.exists()


def unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: a read-only one, or /sys where permissions do not bind
    (root), which refuses new files even to root."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):
        locked.chmod(0o700)
        locked = Path("/sys")
        if not locked.is_dir():
            pytest.skip("no directory this process cannot write in")
    return locked


def test_calibrate_out_in_an_unwritable_directory_is_refused_before_calibrating(tmp_path, monkeypatch, capsys):
    refuse_compute(monkeypatch, "noisesearch.cli.calibrate")
    locked = unwritable_directory(tmp_path)
    try:
        assert main(["calibrate", "--reward", "brightness", "--out", str(locked / "s.json")]) == 1
    finally:
        if locked != Path("/sys"):
            locked.chmod(0o700)
    assert f"--out {locked / 's.json'}: cannot write in {locked}" in one_line_error(capsys)
    assert not (locked / "s.json").exists() and not list(tmp_path.glob("locked/.noisesearch-*"))


def test_calibrate_out_that_can_be_written_leaves_no_trace_of_the_check(tmp_path, monkeypatch, capsys):
    def stop(*args: object, **kwargs: object) -> None:
        raise NoiseSearchError("stopped before calibrating")

    monkeypatch.setattr("noisesearch.cli.calibrate", stop)
    (tmp_path / "old.json").write_text("{}")
    for name in ("s.json", "old.json"):
        assert main(["calibrate", "--reward", "brightness", "--out", str(tmp_path / name)]) == 1
        assert "stopped before calibrating" in one_line_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"] and (tmp_path / "old.json").read_text() == "{}"


PROBES = ("noisesearch.drivers.calibrate:probe_final_gains", "noisesearch.drivers.calibrate:probe_reliability",
          "noisesearch.api.PlannedSearch.run")


@pytest.mark.parametrize("method", ["final", "gain", "reliability"])
def test_a_calibration_budget_short_of_one_trajectory_is_refused_before_the_probe(method, denoiser, monkeypatch):
    from noisesearch.adaptive import CalibrationConfig
    from noisesearch.drivers import calibrate

    refuse_compute(monkeypatch, *PROBES)
    args = {"steps": 6, "denoiser": denoiser}  # Heun, 6 steps: 11 calls a trajectory
    short = CalibrationConfig(conditions=2, method=method, N=1, K=1, moves=(), beams=(1,))
    with pytest.raises(NoiseSearchError, match=r"budget of 4 calls per image \(the default: a third of the 11 calls "
                                               r"of eps-greedy N=1, K=1\) is below one plain sampler trajectory "
                                               r"\(11 calls\): give a target_nfe \(--target-nfe\) of at least 11"):
        calibrate("brightness", short, **args)
    with pytest.raises(NoiseSearchError, match="budget of 10 calls per image is below one plain"):
        calibrate("brightness", CalibrationConfig(conditions=2, method=method, target_nfe=10, moves=(), beams=(1,)),
                  **args)


def test_beams_the_validation_budget_cannot_hold_are_refused_before_the_first_probe(denoiser, monkeypatch):
    from noisesearch.adaptive import CalibrationConfig
    from noisesearch.drivers import calibrate

    refuse_compute(monkeypatch, *PROBES)
    with pytest.raises(NoiseSearchError, match="B = 9 incumbents need 99 calls per image, above the budget"):
        calibrate("brightness", CalibrationConfig(conditions=3, N=2, K=8, moves=(), beams=(1, 9)), steps=6,
                  denoiser=denoiser)


def test_calibrate_with_its_default_target_nfe_short_of_a_trajectory_fails_in_one_line(tmp_path, monkeypatch,
                                                                                      capsys):
    refuse_compute(monkeypatch, *PROBES)
    out = tmp_path / "s.json"
    assert main(["calibrate", "--reward", "brightness", "--N", "1", "--K", "1", "--moves", "none", "--beams", "1",
                 "--conditions", "2", "--steps", "6", "--no-progress", "--out", str(out)]) == 1
    assert "below one plain sampler trajectory (11 calls)" in one_line_error(capsys) and not out.exists()


def test_adaptive_target_nfe_above_the_hard_budget_is_refused_before_the_search(denoiser, monkeypatch):
    from noisesearch.api import plan_search, search

    args = {"algorithm": "adaptive_eps_greedy", "reward": "brightness", "labels": [0, 1], "denoiser": denoiser,
            "steps": 6, "evaluator": None, "search_schedule": TINY_PLAN}
    planned = plan_search(**args, target_nfe=300, nfe_budget=100)
    with pytest.raises(BudgetExceeded, match="may spend 300 NFE per image \\(target_nfe 300\\), over the hard "
                                             "budget of 100"):
        planned.algorithm.check_budget(planned.problem)
    assert int(planned.problem.nfe.sum()) == 0
    plan_search(**args, target_nfe=100, nfe_budget=100).algorithm.check_budget(planned.problem)  # at the budget
    refuse_compute(monkeypatch, "noisesearch.adaptive.algorithm.AdaptiveEpsGreedy._search")
    with pytest.raises(BudgetExceeded, match="over the hard budget of 100"):
        search(**args, target_nfe=300, nfe_budget=100)


def test_sample_adaptive_with_target_nfe_above_the_budget_fails_in_one_line(tmp_path, monkeypatch, capsys):
    refuse_compute(monkeypatch, "noisesearch.api.PlannedSearch.run")
    out = tmp_path / "o"
    assert main(["sample", "--algorithm", "adaptive_eps_greedy", "--target-nfe", "300", "--nfe-budget", "100",
                 "--no-progress", "--out", str(out)]) == 1
    assert "over the hard budget of 100" in one_line_error(capsys) and not out.exists()


def test_a_prompts_file_that_is_not_utf8_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    refuse_compute(monkeypatch, "noisesearch.api.make_problem")
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"a cat\n" + "ein Hund über der Wiese\n".encode("latin-1"))
    out = tmp_path / "o"
    assert main(["sample", "--backend", "diffusers", "--prompts-file", str(prompts), "--out", str(out)]) == 1
    assert (f"--prompts-file {prompts} is not UTF-8 text (byte 0xfc at offset 15): save it as UTF-8"
            in one_line_error(capsys)) and not out.exists()


def test_a_scoring_only_reward_is_refused_as_a_search_reward_before_any_model_loads(denoiser, monkeypatch):
    from noisesearch.adaptive import CalibrationConfig
    from noisesearch.api import make_problem, search
    from noisesearch.drivers import calibrate
    from noisesearch.rewards.registry import is_scoring_only

    assert is_scoring_only("evaluator") and not is_scoring_only("classifier")
    refuse_compute(monkeypatch, "noisesearch.api.load_backend_denoiser", *PROBES)
    message = "reward 'evaluator' is scoring-only .*: give it as the evaluator and search with another reward"
    with pytest.raises(NoiseSearchError, match=message):
        make_problem(reward="evaluator")
    with pytest.raises(NoiseSearchError, match=message):
        search(reward="evaluator", labels=[0], denoiser=denoiser, steps=3)
    with pytest.raises(NoiseSearchError, match=message):
        calibrate("evaluator", CalibrationConfig(conditions=2), steps=6, denoiser=denoiser)


@pytest.mark.parametrize("command", [["sample"], ["calibrate", "--conditions", "2"]])
def test_the_command_line_refuses_a_scoring_only_search_reward_in_one_line(command, tmp_path, monkeypatch, capsys):
    refuse_compute(monkeypatch, "noisesearch.api.load_backend_denoiser", *PROBES)
    out = tmp_path / ("o" if command == ["sample"] else "s.json")
    assert main([*command, "--reward", "evaluator", "--no-progress", "--out", str(out)]) == 1
    assert "reward 'evaluator' is scoring-only" in one_line_error(capsys) and not out.exists()
