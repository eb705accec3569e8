"""Rows per call in one place: max_batch's one check, the one probe call, max_batch="auto" (sized from free
device memory; its arithmetic tested with fakes here: no GPU on CI)."""

import json

import pytest
import torch

from noisesearch import NoiseSearchError
from noisesearch import batching as batching_module
from noisesearch.api import make_problem, plan_search
from noisesearch.batching import (
    AUTO_CAP,
    DEFAULT_MAX_BATCH,
    CallProbe,
    parse_max_batch,
    per_row_and_fixed,
    probe_call,
    rows_that_fit,
)
from noisesearch.cli import main
from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.cells import cell_memory_mb
from noisesearch.experiments.presets import get_preset
from noisesearch.sampling import make_sampler

BAD_MAX_BATCHES = [0, -1, "x", 1.5, True]


def test_a_probe_of_one_and_two_rows_separates_per_row_from_fixed_memory():
    one, two = (300.0 + 50 * rows for rows in (1, 2))  # 300 MB of workspace plus 50 per row
    assert per_row_and_fixed(one, two) == (50.0, 300.0)


def test_rows_that_fit_keep_a_fifth_of_the_free_memory_and_stay_between_one_and_the_cap():
    assert rows_that_fit(100.0, free_bytes=10_000, fixed_bytes=0) == 80
    assert rows_that_fit(100.0, free_bytes=10_000, fixed_bytes=4_000) == 40
    assert rows_that_fit(1e9, free_bytes=10_000) == 1
    assert rows_that_fit(1.0, free_bytes=10**12) == AUTO_CAP


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("8", 8), (3, 3)])
def test_max_batch_takes_a_positive_integer_or_auto(value, expected):
    assert parse_max_batch(value) == expected


@pytest.mark.parametrize("value", ["0", "many", -2, True, 8.0, " 8", ""])
def test_other_max_batches_are_one_line_errors(value):
    with pytest.raises(NoiseSearchError, match="positive integer or 'auto'"):
        parse_max_batch(value)


def test_auto_is_refused_where_calls_need_a_fixed_shape():
    assert parse_max_batch(8, fixed_for="bench") == 8
    with pytest.raises(NoiseSearchError, match="^bench needs a fixed max_batch, not 'auto'$"):
        parse_max_batch("auto", fixed_for="bench")


def one_message(value) -> str:
    return f"max_batch must be a positive integer or 'auto', got {value}"


def cli_error(argv, capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse refuses a bad --max-batch itself
        code = stop.code
    err = capsys.readouterr().err
    assert code != 0 and len(err.strip().splitlines()) == 1
    return err


@pytest.mark.parametrize("value", BAD_MAX_BATCHES)
def test_every_entry_point_refuses_a_bad_max_batch_with_the_one_message(value, denoiser, tmp_path, capsys):
    message = one_message(value)
    with pytest.raises(NoiseSearchError) as raised:
        make_problem(denoiser=denoiser, reward="brightness", max_batch=value, steps=3)
    assert str(raised.value) == message
    preset = get_preset("calibration_cost")
    with pytest.raises(NoiseSearchError) as raised:
        run_bench(preset, tmp_path / "run", max_batch=value, progress=False)
    assert str(raised.value) == message and not (tmp_path / "run").exists()
    commands = (["sample", "--steps", "2"], ["bench", "--preset", "calibration_cost"], ["calibrate"], ["reliability"])
    for command in commands:
        err = cli_error([*command, "--out", str(tmp_path / "o"), "--max-batch", str(value)], capsys)
        assert f"argument --max-batch: {message} " in err
    assert not (tmp_path / "o").exists()


def test_the_estimate_and_the_bench_memory_schedule_both_time_and_measure_through_the_one_probe(denoiser,
                                                                                              monkeypatch):
    calls = []

    def probe(denoiser, rows, sigma, cond):
        calls.append(rows)
        return CallProbe(seconds=0.5, peak_mb=7.0)

    for module in ("noisesearch.api", "noisesearch.experiments.cells"):
        monkeypatch.setattr(f"{module}.probe_call", probe)
    estimate = plan_search(denoiser=denoiser, reward="brightness", evaluator=None, max_batch=4, steps=3).estimate()
    assert calls == [4, 4] and estimate.call_mb == 7.0 and estimate.seconds == 0.5 * -(-estimate.nfe_total // 4)
    assert cell_memory_mb(denoiser, make_sampler("heun", 3), 8) == pytest.approx(7.0 + batching_module.module_mb(
        denoiser)) and calls[-1] == 8


def test_a_probe_call_is_unmetered_and_conditions_every_row_on_the_first(denoiser):
    seen = []

    def wrapped(x, sigma, cond):
        seen.append((x.shape, sigma.tolist(), cond.tolist()))
        return denoiser(x, sigma, cond)

    wrapped.image_shape = denoiser.image_shape
    probe = probe_call(wrapped, 3, 2.5, torch.tensor([7, 1]))
    assert seen == [((3, *denoiser.image_shape), [2.5] * 3, [7, 7, 7])]
    assert probe.seconds > 0 and probe.peak_mb >= 0


def test_auto_on_the_cpu_is_the_default_batch_and_is_recorded_as_a_number(denoiser):
    planned = plan_search(denoiser=denoiser, reward="brightness", evaluator=None, max_batch="auto",
                                      steps=3)
    assert planned.problem.max_batch == DEFAULT_MAX_BATCH == planned.config["max_batch"]


def test_auto_and_the_batch_invariant_mode_exclude_each_other(denoiser):
    with pytest.raises(NoiseSearchError, match="needs a fixed max_batch"):
        plan_search(denoiser=denoiser, reward="brightness", max_batch="auto", batch_invariant=True)


def test_one_image_cli_run_records_its_mode(tmp_path):
    from noisesearch.cli import main

    out = tmp_path / "o"
    assert main(["sample", "--algorithm", "best_of_n", "--N", "2", "--reward", "brightness", "--evaluator", "none",
                 "--steps", "3", "--max-batch", "auto", "--no-progress", "--out", str(out)]) in (0, None)
    config = json.loads((out / "result.json").read_text())["config"]
    assert config["batch_invariant"] is False and config["max_batch"] == DEFAULT_MAX_BATCH
