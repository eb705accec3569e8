"""Hardening of bench, its run directories and reports (issue 33, second pass): every user mistake is one line,
raised before the compute it guards, and a failed start leaves nothing behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_denoiser

from noisesearch.batching import MAX_BATCH
from noisesearch.cli import main
from noisesearch.errors import NoiseSearchError
from noisesearch.executors import Executor, make_executor
from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.cells import preset_cells
from noisesearch.experiments.presets import Preset, get_preset
from noisesearch.experiments.store import RESULTS, SETTINGS, load_results
from noisesearch.sampling.schedules import MAX_STEPS
from noisesearch.search.step_schedule import SearchSchedule

TINY = {
    "description": "two labels, naive and best-of-2, four steps",
    "labels": 2, "repeats": 1, "steps": 4,
    "rewards": [{"name": "brightness", "reward": "brightness"}],
    "runs": [{"algorithm": "naive"}, {"algorithm": "best_of_n", "params": {"N": 2}}],
}
DEEP = "[" * 100_000 + "]" * 100_000  # nested deeper than Python's recursion limit


def tiny(**changes):
    return Preset.from_dict("tiny", {**TINY, **changes})


def bench(out, preset=None, **kwargs):
    return run_bench(preset or tiny(), out, progress=False, model_loader=tiny_denoiser, **kwargs)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` (relative path: bytes), and every folder (relative path/: b'')."""
    return {str(p.relative_to(directory)) + ("/" if p.is_dir() else ""): b"" if p.is_dir() else p.read_bytes()
            for p in sorted(directory.rglob("*"))}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_preset(path: Path, **changes) -> Path:
    path.write_text(json.dumps({"tiny": {**TINY, **changes}}))
    return path


# 1. An unreachable Ray address fails in seconds, in one line.

def test_an_unreachable_ray_address_fails_in_seconds_in_one_line(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "o"
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "noisesearch.cli", "bench", "--preset", "table1", "--labels", "1",
                           "--executor", "ray", "--ray-address", f"127.0.0.1:{closed_port()}", "--out", str(out)],
                          capture_output=True, text=True, timeout=45)
    assert time.monotonic() - start < 30
    err = done.stderr.strip()
    assert done.returncode == 1 and len(err.splitlines()) == 1 and "cannot reach Ray at 127.0.0.1:" in err, err
    assert not out.exists()


# 2. A failed start leaves no directory behind, or the directory exactly as it was.

class RefusingExecutor(Executor):
    """Refuses its tasks the way Ray refuses a task larger than the cluster: when they are handed over."""

    def map(self, fn, tasks, resources=None, callback=None):
        raise NoiseSearchError("a task needs 1000 CPUs but the Ray cluster has 2 in all: ask for less per cell")


class TooSmall(Executor):
    def check(self, resources):
        raise NoiseSearchError("a task needs 1000 CPUs but the Ray cluster has 2 in all: ask for less per cell")


def test_a_start_refused_by_its_executor_leaves_no_directory(tmp_path):
    for executor in (TooSmall(), RefusingExecutor()):
        out = tmp_path / "new" / "run"
        with pytest.raises(NoiseSearchError, match="1000 CPUs"):
            bench(out, executor=executor)
        assert not (tmp_path / "new").exists()
        empty = tmp_path / "empty"
        empty.mkdir(exist_ok=True)
        with pytest.raises(NoiseSearchError, match="1000 CPUs"):
            bench(empty, executor=executor)
        assert snapshot(empty) == {}


def test_a_start_refused_by_its_executor_leaves_an_existing_run_as_it_was(tmp_path):
    out = tmp_path / "run"
    bench(out)
    before = snapshot(out)
    with pytest.raises(NoiseSearchError, match="1000 CPUs"):
        bench(out, preset=tiny(labels=3), executor=TooSmall())
    assert snapshot(out) == before


def test_a_model_that_fails_to_load_leaves_no_directory(tmp_path):
    def broken(guidance):
        raise NoiseSearchError("cannot load the model")

    with pytest.raises(NoiseSearchError, match="cannot load the model"):
        run_bench(tiny(), tmp_path / "run", progress=False, model_loader=broken)
    assert not (tmp_path / "run").exists()


def test_a_malformed_reuse_source_is_refused_before_anything_is_written(tmp_path):
    source = tmp_path / "source"
    bench(source)
    with (source / RESULTS).open("a") as f:
        f.write("{not json\n")
    with pytest.raises(NoiseSearchError, match=r"results.jsonl, line 5: not a JSON record"):
        bench(tmp_path / "new", reuse=[source])
    assert not (tmp_path / "new").exists()
    out = tmp_path / "run"
    bench(out)
    before = snapshot(out)
    with pytest.raises(NoiseSearchError, match="line 5"):
        bench(out, reuse=[source])
    assert snapshot(out) == before


def test_a_preset_whose_schedule_is_no_name_is_refused_at_load(tmp_path, capsys):
    runs = [{"algorithm": "adaptive_eps_greedy", "params": {"search_schedule": 5}}]
    with pytest.raises(NoiseSearchError, match='search_schedule must be "calibrated", "calibrated:COLUMN" or the '
                                               "path of a schedule file, got 5"):
        tiny(runs=runs)
    preset = write_preset(tmp_path / "p.json", runs=runs)
    assert main(["bench", "--preset", str(preset), "--out", str(tmp_path / "o")]) == 1
    assert "search_schedule" in one_line(capsys) and not (tmp_path / "o").exists()


# 3. Sizes that could never be allocated are refused before anything is written.

def test_huge_steps_and_max_batch_are_refused_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(NoiseSearchError, match=f"steps must be at most {MAX_STEPS:,}, got 1000000000000"):
        tiny(steps=10**12)
    preset = write_preset(tmp_path / "p.json", steps=10**12)
    assert main(["bench", "--preset", str(preset), "--out", str(tmp_path / "o")]) == 1
    assert "steps must be at most" in one_line(capsys)
    too_many = f"max_batch must be at most {MAX_BATCH:,} rows per call, got 100,000,000"
    with pytest.raises(NoiseSearchError, match=too_many):
        bench(tmp_path / "o", max_batch=10**8)
    with pytest.raises(SystemExit) as usage:  # the flag's parser refuses it, as a usage error
        main(["bench", "--preset", "table1", "--labels", "1", "--max-batch", "100000000", "--out", str(tmp_path / "o")])
    assert usage.value.code == 2 and "max_batch must be at most" in one_line(capsys)
    assert not (tmp_path / "o").exists()


# 4. Files that are no text, JSON nested past the recursion limit, paths that are no UTF-8, folders for files.

def test_a_preset_file_that_is_no_utf8_or_nested_too_deep_is_one_line(tmp_path):
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"tiny": {"description": "\xff\xfe"}}')
    with pytest.raises(NoiseSearchError, match="is not UTF-8 text"):
        get_preset(str(binary))
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    with pytest.raises(NoiseSearchError, match="nested too deeply"):
        get_preset(str(deep))


def test_a_schedule_or_results_line_nested_too_deep_is_one_line(tmp_path):
    schedule = tmp_path / "schedule.json"
    schedule.write_text(DEEP)
    with pytest.raises(NoiseSearchError, match="nested too deeply"):
        SearchSchedule.load(schedule)
    results = tmp_path / RESULTS
    results.write_text(DEEP + "\n")
    with pytest.raises(NoiseSearchError, match=r"results.jsonl, line 1: .*nested too deeply"):
        load_results(results)


def test_a_report_over_a_path_that_is_no_utf8_is_written_whole(tmp_path, capsys):
    run = Path(os.fsdecode(bytes(tmp_path) + b"/run\xff"))
    bench(run)
    assert main(["report", str(run)]) == 0
    text = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "run\\udcff" in text and "naive" in text
    assert "report.md" in capsys.readouterr().out
    assert not [p for p in (run / "report").iterdir() if p.name.endswith(".tmp")]


def test_a_results_file_that_is_a_directory_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    bench(out)
    (out / RESULTS).unlink()
    (out / RESULTS).mkdir()
    before = snapshot(out)
    with pytest.raises(NoiseSearchError, match=f"{RESULTS} is a directory"):
        bench(out)
    assert snapshot(out) == before
    assert main(["report", str(out)]) == 1
    assert RESULTS in one_line(capsys)


# 5. Schedule info that code reads is checked when the schedule is made or loaded.

@pytest.mark.parametrize("field, value, fragment", [
    ("lambda_", "x", "info lambda_ must be a positive number, got \"x\""),
    ("lambda_", 0, "info lambda_ must be a positive number, got 0"),
    ("B", -3, "info B must be an integer of at least 1, got -3"),
    ("B", 2.5, "info B must be an integer of at least 1, got 2.5"),
    ("target_nfe", 0, "info target_nfe must be an integer of at least 1 (or null), got 0"),
    ("calibration_nfe", "many", "info calibration_nfe must be an integer of at least 0"),
    ("eps", 2, "info eps must be a number in [0, 1], got 2"),
])
def test_schedule_info_that_code_reads_is_checked_at_load(tmp_path, field, value, fragment):
    from noisesearch.sampling import make_sampler

    good = SearchSchedule.uniform(make_sampler("heun", 4), 1, 0.5, 2, info={"B": 2, "lambda_": 0.3})
    data = good.to_dict()
    data["info"] = {**data["info"], field: value}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NoiseSearchError, match="schedule: ") as err:
        SearchSchedule.load(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert SearchSchedule.from_dict(good.to_dict()).info == {"B": 2, "lambda_": 0.3}


# 6. A record that is not finite is malformed.

@pytest.mark.parametrize("field", ["reward_value", "evaluator", "wall_time_s", "guidance"])
def test_a_record_that_is_not_finite_is_refused_by_report_and_reuse(tmp_path, capsys, field):
    source = tmp_path / "source"
    bench(source)
    lines = (source / RESULTS).read_text().splitlines()
    record = json.loads(lines[1])
    record[field] = float("nan") if field != "wall_time_s" else float("inf")
    lines[1] = json.dumps(record)
    (source / RESULTS).write_text("\n".join(lines) + "\n")
    assert main(["report", str(source)]) == 1
    err = one_line(capsys)
    assert f"results.jsonl, line 2: \"{field}\" must be" in err and "nan" not in err.split("must be")[1].split(",")[0]
    with pytest.raises(NoiseSearchError, match="line 2"):
        bench(tmp_path / "new", reuse=[source])
    assert not (tmp_path / "new").exists()


# 7. --retries means something only where workers can die.

def test_retries_with_the_serial_executor_is_refused(tmp_path, capsys):
    with pytest.raises(NoiseSearchError, match="--retries does not apply to --executor serial"):
        make_executor("serial", retries=2)
    make_executor("serial").close()
    assert make_executor("process", workers=1).retries == 2
    assert main(["bench", "--preset", "table1", "--labels", "1", "--retries", "2", "--out", str(tmp_path / "o")]) == 1
    assert "--retries does not apply to --executor serial" in one_line(capsys)
    assert not (tmp_path / "o").exists()


# Valid runs are unchanged by the checks.

def test_a_valid_run_still_resumes_and_reuses(tmp_path):
    first = load_results(bench(tmp_path / "a")).records
    again = load_results(bench(tmp_path / "b", reuse=[tmp_path / "a"])).records
    assert [r["reward_value"] for r in again] == [r["reward_value"] for r in first]
    assert json.loads((tmp_path / "b" / SETTINGS).read_text())["max_batch"] == 16
    assert len(preset_cells(tiny())) == 2 and np.isfinite([r["reward_value"] for r in first]).all()
