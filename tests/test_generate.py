"""noisesearch generate: a conditions file searched shard by shard into a Parquet data set that resumes after
any kill (driver, worker, a damaged shard) to the records of an uninterrupted run, on every executor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from executor_helpers import executor, kill_a_busy_worker, ray_task_pids

from noisesearch.cli import main
from noisesearch.drivers.dataset import read_records, shard_path
from noisesearch.drivers.generate import JOB, read_conditions, run_generate
from noisesearch.errors import NoiseSearchError
from noisesearch.files import exclusive_lock

pytestmark = pytest.mark.usefixtures("deadline")
pytest.importorskip("pyarrow")

LABELS = [3, 1, 4, 1, 5, 9, 2]
JOB_ARGS = {"algorithm": "eps_greedy", "params": {"N": 2, "K": 2}, "reward": "brightness", "steps": 5,
            "shard_size": 2, "seed": 11, "progress": False}
CLI_ARGS = ["--algorithm", "eps_greedy", "--N", "2", "--K", "2", "--reward", "brightness", "--steps", "5",
            "--shard-size", "2", "--seed", "11", "--no-progress"]


def conditions_file(directory: Path, labels=LABELS) -> Path:
    path = directory / "labels.txt"
    path.write_text("".join(f"{label}\n" for label in labels))
    return path


def contents(out: Path) -> list[dict]:
    """A data set's records with their images, without wall times."""
    return [{k: v for k, v in row.items() if k != "wall_time_s"} for row in read_records(out, with_images=True)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted serial run every other run must reproduce."""
    root = tmp_path_factory.mktemp("reference")
    run_generate(conditions_file(root), root / "data", **JOB_ARGS)
    return root / "data"


def test_a_job_writes_one_record_per_condition_with_its_seed_image_and_cost(reference):
    records = read_records(reference, with_images=True)
    assert [r["index"] for r in records] == list(range(len(LABELS)))
    assert [r["label"] for r in records] == LABELS
    assert [r["seed"] for r in records] == [11 + i for i in range(len(LABELS))]  # as `sample --seed 11` seeds them
    assert all(r["nfe"] > 0 and r["evaluator"] is not None and r["image"]["bytes"][:4] == b"\x89PNG"
               for r in records)
    assert len(list((reference / "data").glob("train-*-of-00004.parquet"))) == 4
    assert json.loads(records[0]["config"])["params"]["N"] == 2
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["written"] == len(LABELS) and summary["nfe"] == sum(r["nfe"] for r in records)


def test_a_shard_equals_the_same_conditions_searched_alone(reference, tmp_path):
    """A shard is a batch of conditions with their own seeds: the first shard is the search of its two labels."""
    from noisesearch import search

    alone = search(algorithm="eps_greedy", N=2, K=2, reward="brightness", steps=5, labels=LABELS[:2], seeds=[11, 12])
    records = read_records(reference)[:2]
    assert [r["reward"] for r in records] == [float(v) for v in alone.rewards]


def test_rerunning_a_finished_job_computes_nothing_and_changes_nothing(reference, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (reference / "data").iterdir()}
    summary = run_generate(conditions_file(tmp_path), reference, **JOB_ARGS)
    assert summary.computed == 0 and summary.conditions == len(LABELS)
    assert {p.name: p.stat().st_mtime_ns for p in (reference / "data").iterdir()} == before


def test_a_missing_or_damaged_shard_is_computed_again_and_equals_the_original(reference, tmp_path):
    out = tmp_path / "data"
    run_generate(conditions_file(tmp_path), out, **JOB_ARGS)
    shard_path(out, 1, 4).unlink()
    shard_path(out, 2, 4).write_bytes(b"PAR1 not really")
    (out / "data" / ".train-00003-of-00004.parquet.x.tmp").write_bytes(b"half a write")
    with pytest.warns(UserWarning, match=r"shard 2 \(train-00002-of-00004.parquet\) is unreadable"):
        summary = run_generate(conditions_file(tmp_path), out, **JOB_ARGS)
    assert summary.computed == 4  # shards 1 and 2, two conditions each
    assert contents(out) == contents(reference)
    assert not list((out / "data").glob(".*.tmp"))


def test_the_driver_killed_mid_run_resumes_to_the_uninterrupted_records(reference, tmp_path):
    out = tmp_path / "data"
    command = [sys.executable, "-m", "noisesearch.cli", "generate", "--conditions", str(conditions_file(tmp_path)),
               "--out", str(out), *CLI_ARGS]
    driver = subprocess.Popen(command, env=os.environ | {"OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while not list((out / "data").glob("train-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    written = len(list((out / "data").glob("train-*.parquet")))
    assert 1 <= written < 4, "the driver was not killed mid-run"
    assert main(["generate", "--conditions", str(conditions_file(tmp_path)), "--out", str(out), *CLI_ARGS]) == 0
    assert contents(out) == contents(reference)  # complete, unique, equal


@pytest.fixture(scope="module")
def singles(tmp_path_factory) -> Path:
    """A serial run of shards of one condition each: enough shards to kill a worker in the middle of one."""
    root = tmp_path_factory.mktemp("singles")
    run_generate(conditions_file(root, LABELS * 2), root / "data", **JOB_ARGS | {"shard_size": 1})
    return root / "data"


@pytest.mark.parametrize("kind", ["process", pytest.param("ray", marks=pytest.mark.slow)])
def test_other_executors_write_the_serial_records_and_survive_a_killed_worker(kind, singles, tmp_path, request):
    out = tmp_path / "data"
    killed: list[int] = []
    with executor(kind, request) as ex:
        busy = ex.busy_pids if kind == "process" else ray_task_pids
        ready = lambda: bool(list((out / "data").glob("train-*.parquet")))  # noqa: E731
        killer = threading.Thread(target=kill_a_busy_worker, args=(busy, ready, killed), daemon=True)
        killer.start()
        run_generate(conditions_file(tmp_path, LABELS * 2), out, **JOB_ARGS | {"shard_size": 1}, executor=ex)
        killer.join()
    assert killed, "no worker was busy to be killed"
    assert contents(out) == contents(singles)  # complete, unique and equal to serial's


def test_the_data_set_loads_with_hugging_face_datasets_and_holds_preference_pairs(tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "pairs"
    run_generate(conditions_file(tmp_path, [0, 7, 2]), out, **JOB_ARGS | {"keep_candidates": True})
    data = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train",
                                 cache_dir=str(tmp_path / "cache"))
    assert data.num_rows == 3 and sorted(data["label"]) == [0, 2, 7]
    row = data[0]
    assert row["image"].size == (28, 28)  # decoded as PIL images: the Image feature
    assert len(row["candidate_images"]) == len(row["candidate_rewards"]) == 2  # eps_greedy's N candidates
    assert row["chosen_reward"] == max(row["candidate_rewards"]) >= row["rejected_reward"] == min(
        row["candidate_rewards"])
    assert row["chosen"].size == row["rejected"].size == (28, 28)


def test_best_of_n_keeps_its_n_final_images_and_chooses_its_result(tmp_path):
    out = tmp_path / "bon"
    args = JOB_ARGS | {"algorithm": "best_of_n", "params": {"N": 3}, "keep_candidates": True}
    run_generate(conditions_file(tmp_path, [5, 6]), out, **args)
    for row in read_records(out, with_images=True):
        assert len(row["candidate_rewards"]) == 3
        assert row["chosen_reward"] == row["reward"]  # best-of-N returns its best final image
        assert row["chosen"]["bytes"] == row["image"]["bytes"]


def test_a_jsonl_file_gives_seeds_and_metadata_per_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"label": 4, "seed": 99, "source": "a"}\n\n{"label": 2}\n')
    rows = read_conditions(path, "label", seed=5)
    assert [(c.value, c.seed, c.metadata) for c in rows] == [(4, 99, {"source": "a"}), (2, 6, {})]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\n\n  a dog  \n")
    assert [c.value for c in read_conditions(prompts, "prompt")] == ["a cat", "a dog"]


@pytest.mark.parametrize("text, message", [
    ('{"label": 1}\nnot json\n', "line 2 is not JSON"),
    ('{"prompt": "x"}\n', 'line 1: each line must be a JSON object with a "label" key'),
    ('{"label": 1.5}\n', 'line 1: a label must be an integer, got 1.5'),
    ('{"label": 1, "seed": -1}\n', "seed"),
    ("\n\n", "holds no conditions"),
])
def test_bad_conditions_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "rows.jsonl"
    path.write_text(text)
    with pytest.raises(NoiseSearchError, match=message):
        read_conditions(path, "label")


def test_a_changed_setting_or_conditions_file_is_refused(reference, tmp_path):
    with pytest.raises(NoiseSearchError, match="was started with --steps 5, not 6"):
        run_generate(conditions_file(tmp_path), reference, **JOB_ARGS | {"steps": 6})
    with pytest.raises(NoiseSearchError, match="was started with the algorithm parameters K=2, N=2, not K=3, N=2"):
        run_generate(conditions_file(tmp_path), reference, **JOB_ARGS | {"params": {"N": 2, "K": 3}})
    with pytest.raises(NoiseSearchError, match="was started with other conditions"):
        run_generate(conditions_file(tmp_path, LABELS + [0]), reference, **JOB_ARGS)
    assert json.loads((reference / JOB).read_text())["settings"]["steps"] == 5


def test_a_second_writer_is_refused(reference, tmp_path):
    with exclusive_lock(reference / "job.lock", "held"), pytest.raises(NoiseSearchError, match="another generate"):
        run_generate(conditions_file(tmp_path), reference, **JOB_ARGS)


@pytest.mark.parametrize("change, message", [
    ({"algorithm": "eps_greedy", "params": {"N": 0}}, "N"),
    ({"algorithm": "naive", "params": {}, "keep_candidates": True}, "'naive' compares none"),
    ({"algorithm": "online_adaptive_eps_greedy", "params": {"target_nfe": 40}}, "learns across conditions"),
    ({"reward": "fid_oracle"}, "is set-level"),
    ({"shard_size": 0}, "--shard-size must be an integer of at least 1"),
])
def test_bad_settings_are_refused_before_anything_is_written(tmp_path, change, message):
    with pytest.raises(NoiseSearchError, match=message):
        run_generate(conditions_file(tmp_path), tmp_path / "out", **JOB_ARGS | change)
    assert not (tmp_path / "out").exists()


def test_a_label_the_model_lacks_is_refused_before_the_search(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["generate", "--conditions", str(conditions_file(tmp_path, [3, 12])), "--out", str(out), *CLI_ARGS])
    assert code == 1 and not out.exists()
    assert capsys.readouterr().err == "noisesearch: --conditions, condition 2: label 12 is outside 0-9: MNIST labels " \
                                      "are digits 0 to 9\n"


def test_prompts_on_a_diffusers_pipeline_resume_per_shard_with_their_own_prompts(tmp_path):
    pytest.importorskip("diffusers")
    from tiny_pipeline import save_tiny_pipeline

    from noisesearch import search

    model = str(save_tiny_pipeline(tmp_path))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a red square", "style": "flat"}\n{"prompt": "a blue circle"}\n'
                       '{"prompt": "a green line", "seed": 7}\n')
    args = {"algorithm": "best_of_n", "params": {"N": 2}, "reward": "brightness", "backend": "diffusers",
            "model": model, "steps": 3, "guidance": 1.0, "shard_size": 2, "evaluator": None, "progress": False}
    run_generate(prompts, tmp_path / "data", **args)
    records = read_records(tmp_path / "data")
    assert [(r["prompt"], r["seed"], json.loads(r["metadata"])) for r in records] == [
        ("a red square", 0, {"style": "flat"}), ("a blue circle", 1, {}), ("a green line", 7, {})]
    alone = search(algorithm="best_of_n", N=2, reward="brightness", backend="diffusers", model=model, steps=3,
                   guidance=1.0, prompts=["a green line"], seeds=[7], evaluator=None)
    assert records[2]["reward"] == float(alone.rewards[0])  # the second shard encoded its own prompt


def test_a_process_loads_the_model_once_for_all_its_shards(tmp_path, monkeypatch):
    from noisesearch.drivers import generate

    loads = []
    real = generate.load_backend_denoiser
    monkeypatch.setattr(generate, "WORKER_MODELS", {})
    monkeypatch.setattr(generate, "load_backend_denoiser", lambda *a, **k: loads.append(a) or real(*a, **k))
    run_generate(conditions_file(tmp_path), tmp_path / "data", **JOB_ARGS)  # 4 shards
    assert len(loads) == 1


def test_a_budget_below_the_formula_is_refused_before_the_search(tmp_path):
    with pytest.raises(NoiseSearchError, match="eps_greedy needs 18 NFE per image by its formula, over --nfe-budget 5"):
        run_generate(conditions_file(tmp_path), tmp_path / "out", **JOB_ARGS | {"nfe_budget": 5})
    assert not (tmp_path / "out").exists()


def test_a_first_shard_that_fails_stops_the_job_and_leaves_nothing(tmp_path):
    with pytest.raises(NoiseSearchError, match="shard 0 failed before any other finished, so the job stops: "
                                               "compressibility quality must be"):
        run_generate(conditions_file(tmp_path), tmp_path / "out",
                     **JOB_ARGS | {"reward": "compressibility", "reward_args": {"quality": 500}})
    assert not (tmp_path / "out").exists()
