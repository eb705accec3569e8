"""Executors: a process pool and Ray give serial's records, lose and duplicate nothing when a worker is
killed mid-cell, and let a failing cell fail alone while the others finish."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from executor_helpers import FAILING_GUIDANCE, executor, failing_loader, kill_a_busy_worker, ray_task_pids

from noisesearch.cli import main
from noisesearch.errors import NoiseSearchError
from noisesearch.executors import ProcessExecutor, RayExecutor, Resources
from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.presets import Preset
from noisesearch.experiments.store import CELL_LOG, RESULTS
from noisesearch.testing import tiny_denoiser

pytestmark = pytest.mark.usefixtures("deadline")

SMALL = Preset.from_dict("small", {
    "labels": 2, "repeats": 1, "steps": 4,
    "calibration": {"conditions": 2, "N": 2, "K": 2, "target_nfe": 12, "eps": 0.4, "moves": [[1, 0.15, 0.3]],
                    "beams": [1], "validation_conditions": 2},
    "rewards": [{"name": "brightness", "reward": "brightness"},
                {"name": "uncond", "reward": "brightness", "guidance": 0.0}],
    "runs": [{"algorithm": "naive"}, {"algorithm": "eps_greedy", "params": {"N": 2, "K": 2}},
             {"algorithm": "adaptive_eps_greedy",
              "params": {"search_schedule": "calibrated:brightness", "target_nfe": 12}}],
})
SLOW_CELLS = Preset.from_dict("slow_cells", {  # cells long enough to kill a worker in the middle of one
    "labels": 2, "repeats": 1, "steps": 5, "rewards": [{"name": "brightness", "reward": "brightness"}],
    "runs": [{"algorithm": "eps_greedy", "params": {"N": 4, "K": k}} for k in (4, 5, 6, 7)],
})
FAILING = Preset.from_dict("failing", {
    "labels": 2, "repeats": 1, "steps": 4,
    "rewards": [{"name": "fine", "reward": "brightness"},
                {"name": "broken", "reward": "brightness", "guidance": FAILING_GUIDANCE}],
    "runs": [{"algorithm": "naive"}, {"algorithm": "best_of_n", "params": {"N": 2}}],
})


def contents(run: Path) -> tuple[list[dict], dict[str, dict[str, np.ndarray]]]:
    """A run's records without their wall times, in order of cell and label, and its images and traces."""
    lines = (run / RESULTS).read_text().splitlines()
    records = sorted(({k: v for k, v in json.loads(line).items() if not k.endswith("wall_time_s")} for line in lines),
                     key=lambda r: (r["cell"], r["label_index"]))
    arrays = {}
    for path in sorted([*(run / "images").glob("*.npz"), *(run / "traces").glob("*.npz")]):
        with np.load(path) as data:
            arrays[f"{path.parent.name}/{path.name}"] = {name: data[name] for name in data.files}
    return records, arrays


def assert_same_run(run: Path, reference: Path) -> None:
    (records, arrays), (expected, expected_arrays) = contents(run), contents(reference)
    assert records == expected  # every field but wall times, no record lost or duplicated
    assert arrays.keys() == expected_arrays.keys()
    for name, data in expected_arrays.items():
        assert data.keys() == arrays[name].keys()
        assert all(np.array_equal(arrays[name][k], v) for k, v in data.items()), name


def cell_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / CELL_LOG).read_text().splitlines()]


@pytest.fixture(scope="module")
def serial_runs(tmp_path_factory):
    """The serial runs of SMALL and SLOW_CELLS that the other executors must reproduce."""
    root = tmp_path_factory.mktemp("serial")
    for preset in (SMALL, SLOW_CELLS):
        run_bench(preset, root / preset.name, progress=False, model_loader=tiny_denoiser)
    return root


@pytest.mark.parametrize("kind", ["process", "ray"])
def test_process_pool_and_ray_give_the_records_of_serial(kind, serial_runs, tmp_path, request):
    with executor(kind, request) as ex:
        run_bench(SMALL, tmp_path, progress=False, model_loader=tiny_denoiser, executor=ex)
    assert_same_run(tmp_path, serial_runs / SMALL.name)
    assert (tmp_path / "schedules" / "brightness.json").read_text() == \
        (serial_runs / SMALL.name / "schedules" / "brightness.json").read_text()
    log = cell_log(tmp_path)
    assert len(log) == 6 and all(line["status"] == "done" and line["executor"] == kind for line in log)
    assert os.getpid() not in {line["worker"]["pid"] for line in log}  # the cells ran in the workers


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's workers in /proc")
@pytest.mark.parametrize("kind", ["process", "ray"])
def test_a_worker_killed_mid_cell_loses_nothing_and_duplicates_nothing(kind, serial_runs, tmp_path, request):
    with executor(kind, request) as ex:
        busy = ex.busy_pids if kind == "process" else ray_task_pids
        killed: list[int] = []
        results = tmp_path / RESULTS
        ready = lambda: results.exists() and results.read_text().count("\n") >= 2  # noqa: E731
        killer = threading.Thread(target=kill_a_busy_worker, args=(busy, ready, killed), daemon=True)
        killer.start()
        run_bench(SLOW_CELLS, tmp_path, progress=False, model_loader=tiny_denoiser, executor=ex)
        killer.join()
        if kind == "process":
            assert killed[0] not in [w.process.pid for w in ex.pool]  # replaced
    assert killed, "no worker was busy to be killed"
    assert_same_run(tmp_path, serial_runs / SLOW_CELLS.name)
    log = cell_log(tmp_path)
    assert len(log) == 4 and all(line["status"] == "done" for line in log)
    if kind == "process":  # Ray retries on its own and does not say how often
        assert sorted(line["attempts"] for line in log) == [1, 1, 1, 2]


def test_a_process_worker_dead_idle_is_replaced_and_one_that_always_dies_fails_its_task():
    with ProcessExecutor(workers=1, retries=1) as pool:
        assert [o.value for o in pool.map(abs, [-1])] == [1]
        idle = pool.pool[0].process
        os.kill(idle.pid, signal.SIGKILL)
        idle.join()
        (dying,) = pool.map(os._exit, [3])  # every attempt ends its worker with exit code 3
        assert dying.attempts == 2 and dying.error.startswith("the worker running it died 2 times (last exit code 3")
        assert sorted(o.value for o in pool.map(abs, [-2, -3])) == [2, 3]


def test_a_ray_task_larger_than_the_cluster_is_refused_not_left_waiting(request):
    ray_executor = executor("ray", request)
    with pytest.raises(NoiseSearchError, match="a task needs 4 CPUs but the Ray cluster has 2 in all"):
        list(ray_executor.map(abs, [-1], [Resources(cpus=4)]))
    with pytest.raises(NoiseSearchError, match="a task needs 1 GPUs but the Ray cluster has 0 in all"):
        list(RayExecutor(gpus_per_task=1).map(abs, [-1]))
    assert [o.value for o in ray_executor.map(abs, [-5])] == [5]


def test_a_cell_larger_than_the_ray_cluster_is_refused_before_the_run_directory_is_made(request, tmp_path):
    executor("ray", request)
    with RayExecutor(cpus_per_task=1000) as large, pytest.raises(NoiseSearchError, match="a task needs 1000 CPUs"):
        run_bench(FAILING, tmp_path / "run", progress=False, model_loader=tiny_denoiser, executor=large)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["serial", "process", "ray"])
def test_a_failing_cell_fails_alone_with_its_error_recorded(kind, tmp_path, request):
    with executor(kind, request) as ex, pytest.raises(NoiseSearchError) as err:
        run_bench(FAILING, tmp_path, progress=False, model_loader=failing_loader, executor=ex)
    message = str(err.value)
    assert message.startswith("2 of 4 cells failed, the others are recorded") and "\n" not in message
    records = contents(tmp_path)[0]
    assert len(records) == 2 * 2 and {r["column"] for r in records} == {"fine"}
    failed = [line for line in cell_log(tmp_path) if line["status"] == "failed"]
    assert sorted(line["slug"] for line in failed) == ["best_of_n_N2__broken__r0", "naive__broken__r0"]
    assert all("denoiser returned NaN or inf" in line["error"] for line in failed)
    if kind == "serial":  # a rerun retries only the failed cells
        run_bench(FAILING, tmp_path, progress=False, model_loader=tiny_denoiser)
        records = contents(tmp_path)[0]
        assert len(records) == len({(r["cell"], r["label_index"]) for r in records}) == 2 * 2 * 2


def test_calibrate_on_a_process_pool_gives_the_serial_schedule():
    from noisesearch.adaptive import CalibrationConfig
    from noisesearch.drivers import calibrate

    config = CalibrationConfig(conditions=2, N=2, K=2, target_nfe=16, moves=((1, 0.15, 0.3),), beams=(1, 2),
                               validation_conditions=2)
    args = {"steps": 4, "denoiser": tiny_denoiser(), "progress": False}
    serial = calibrate("brightness", config, **args)
    with ProcessExecutor(workers=2) as pool:
        pooled = calibrate("brightness", config, pool, **args)
    assert pooled.to_dict() == serial.to_dict() and len(serial.info["candidates"]) == 4


@pytest.mark.parametrize("args, fragment", [
    (["--workers", "2"], "--workers does not apply to --executor serial"),
    (["--executor", "process", "--workers", "0"], "--workers must be an integer of at least 1, got 0"),
    (["--executor", "process", "--gpus-per-cell", "1"], "--gpus-per-cell does not apply to --executor process"),
    (["--executor", "process", "--retries", "-1"], "--retries must be an integer of at least 0, got -1"),
    (["--retries", "2"], "--retries does not apply to --executor serial"),
])
def test_executor_options_are_checked_in_one_line(tmp_path, capsys, args, fragment):
    assert main(["bench", "--preset", "table1", "--labels", "1", "--out", str(tmp_path / "o"), *args]) == 1
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    assert main(["calibrate", "--out", str(tmp_path / "s.json"), *args]) == 1  # calibrate takes the same options
    assert fragment in capsys.readouterr().err and not (tmp_path / "s.json").exists()


def test_ray_is_imported_only_when_asked_for():
    import subprocess
    import sys

    code = ("import sys; import noisesearch.cli, noisesearch.experiments.bench; "
            "from noisesearch.executors import make_executor; "
            "[make_executor(name).close() for name in ('serial', 'process')]; assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def children_of(pid: int) -> list[int]:
    """Pids of the processes whose parent is `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers in /proc")
def test_a_killed_driver_leaves_no_worker_behind_and_its_rerun_resumes(tmp_path):
    import subprocess
    import sys

    preset_file = tmp_path / "slow.json"
    preset_file.write_text(json.dumps({"slow": {  # cells of about a second on the packaged model
        "labels": 2, "steps": 4, "rewards": [{"name": "brightness", "reward": "brightness"}],
        "runs": [{"algorithm": "eps_greedy", "params": {"N": 2, "K": k}} for k in (2, 3, 4, 5)]}}))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "noisesearch.cli", "bench", "--preset", str(preset_file), "--out", str(out),
               "--no-progress", "--executor", "process", "--workers", "2"]
    driver = subprocess.Popen(command)
    stop = time.monotonic() + 60
    while time.monotonic() < stop and not ((out / RESULTS).exists() and (out / RESULTS).read_text().count("\n") >= 2):
        time.sleep(0.01)
    workers = children_of(driver.pid)
    driver.kill()
    driver.wait()
    before = (out / RESULTS).read_text().splitlines()
    assert workers and 2 <= len(before) < 8
    stop = time.monotonic() + 30  # a worker finishes its cell, cannot hand it back, and exits
    while time.monotonic() < stop and any(Path(f"/proc/{pid}").exists() for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    subprocess.run(command, check=True, timeout=90)
    after = (out / RESULTS).read_text().splitlines()
    assert after[:len(before)] == before  # the records before the kill stand; the rerun adds only the rest
    assert len(after) == len({(json.loads(line)["cell"], json.loads(line)["label_index"]) for line in after}) == 8
