"""max_batch="auto": sizing calls from free device memory (probed with fakes here: no GPU on CI)."""

import json

import pytest

from noisesearch import NoiseSearchError
from noisesearch.api import plan_search
from noisesearch.batching import AUTO_CAP, DEFAULT_MAX_BATCH, parse_max_batch, probe_bytes, rows_that_fit


def test_a_probe_of_one_and_two_rows_separates_per_row_from_fixed_memory():
    memory = {"peak": 0}

    def call_rows(rows):
        memory["peak"] += 300 + 50 * rows  # 300 bytes of workspace plus 50 per row

    per_row, fixed = probe_bytes(call_rows, lambda: None, lambda: memory["peak"])
    assert (per_row, fixed) == (50.0, 300.0)


def test_rows_that_fit_keep_a_fifth_of_the_free_memory_and_stay_between_one_and_the_cap():
    assert rows_that_fit(100.0, free_bytes=10_000, fixed_bytes=0) == 80
    assert rows_that_fit(100.0, free_bytes=10_000, fixed_bytes=4_000) == 40
    assert rows_that_fit(1e9, free_bytes=10_000) == 1
    assert rows_that_fit(1.0, free_bytes=10**12) == AUTO_CAP


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("8", 8), (3, 3)])
def test_max_batch_takes_a_positive_integer_or_auto(value, expected):
    assert parse_max_batch(value) == expected


@pytest.mark.parametrize("value", ["0", "many", -2, True])
def test_other_max_batches_are_one_line_errors(value):
    with pytest.raises(NoiseSearchError, match="positive integer or 'auto'"):
        parse_max_batch(value)


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
