"""Integrity of bench run directories: complete cell keys, remembered settings, one writer, validated and
unique records, presets that cannot make two cells of one name, one-line errors."""

import fcntl
import json
import subprocess
import sys
import warnings

import pytest
from conftest import tiny_denoiser

from noisesearch.cli import main
from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.cells import preset_cells
from noisesearch.experiments.presets import Preset
from noisesearch.experiments.runs import summarize
from noisesearch.experiments.store import LOCK, RESULTS, SETTINGS, load_results, read_results

TINY = {
    "description": "two labels, naive and best-of-2, four steps",
    "labels": 2, "repeats": 1, "steps": 4,
    "rewards": [{"name": "brightness", "reward": "brightness"}],
    "runs": [{"algorithm": "naive"}, {"algorithm": "best_of_n", "params": {"N": 2}}],
}


def tiny(**changes):
    return Preset.from_dict("tiny", {**TINY, **changes})


def bench(out, preset=None, **kwargs):
    return run_bench(preset or tiny(), out, progress=False, model_loader=tiny_denoiser, **kwargs)


def lines(path):
    return path.read_text().splitlines()


def one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


# Finding 3: seed and steps (and every other setting) are part of a cell's identity.

def test_a_resume_with_another_seed_steps_or_sampler_is_refused(tmp_path):
    out = tmp_path / "run"
    before = lines(bench(out))
    assert json.loads((out / SETTINGS).read_text())["seed"] == 0
    for kwargs, fragment in [({"seed": 1}, "seed 0, not 1"), ({"preset": tiny(steps=6)}, "steps 4, not 6"),
                             ({"sampler": "euler"}, 'sampler "heun", not "euler"'),
                             ({"max_batch": 8}, "max_batch 16, not 8")]:
        with pytest.raises(NoiseSearchError, match="use another --out") as err:
            bench(out, **kwargs)
        assert fragment in str(err.value) and "\n" not in str(err.value)
    assert lines(out / RESULTS) == before  # nothing reported under the new settings
    assert lines(bench(out, tiny(labels=3)))[:len(before)] == before  # more labels: a resume, not a new run
    assert len(read_results(out / RESULTS)) == 2 * 3


def test_cell_keys_name_every_setting_and_reuse_takes_only_identical_cells(tmp_path):
    records = read_results(bench(tmp_path / "euler", sampler="euler"))
    heun = read_results(bench(tmp_path / "heun", reuse=[tmp_path / "euler"]))
    assert not any("reused_from" in r for r in heun)  # another sampler: nothing copied
    key = json.loads(records[0]["cell"])
    assert isinstance(key, dict)
    assert {"seed", "steps", "sampler", "backend", "model", "max_batch", "repeat", "guidance"} <= set(key)
    assert key["sampler"]["solver"] == "euler" and key["steps"] == 4 and key["backend"] == "embedded"
    other_seed = read_results(bench(tmp_path / "seed1", seed=1, reuse=[tmp_path / "heun"]))
    assert not any("reused_from" in r for r in other_seed)
    again = read_results(bench(tmp_path / "again", reuse=[tmp_path / "heun"]))
    assert all(r["reused_from"] == str(tmp_path / "heun") for r in again) and len(again) == len(heun)


def legacy_run(directory):
    """A run directory as bench wrote it before keys held the settings: list keys, no run.json."""
    preset = tiny()
    directory.mkdir()
    (directory / "preset.json").write_text(json.dumps({"preset": preset.to_dict(), "seed": 0}))
    rows = []
    for cell in preset_cells(preset):
        old_key = json.dumps([cell.run.algorithm, cell.run.params, cell.column.name, cell.column.reward,
                              cell.column.guidance, cell.repeat], sort_keys=True)
        for k in range(preset.labels):
            rows.append(json.dumps({"cell": old_key, "algorithm": cell.run.algorithm, "params": cell.run.params,
                                    "column": cell.column.name, "reward": cell.column.reward, "guidance": 1.0,
                                    "repeat": 0, "label_index": k, "label": 7, "seed": k, "reward_value": 0.5,
                                    "evaluator": 0.5, "nfe": 4, "wall_time_s": 1.0, "cell_wall_time_s": 2.0,
                                    "steps": 4}))
    (directory / RESULTS).write_text("\n".join(rows) + "\n")
    return (directory / RESULTS).read_bytes()


def test_a_directory_written_before_run_json_is_neither_resumed_nor_reused(tmp_path):
    old = legacy_run(tmp_path / "old")
    with pytest.raises(NoiseSearchError, match="format 1, whose records cannot be matched.*use another --out"):
        bench(tmp_path / "old")
    assert (tmp_path / "old" / RESULTS).read_bytes() == old and not (tmp_path / "old" / SETTINGS).exists()
    records = read_results(bench(tmp_path / "new", reuse=[tmp_path / "old"]))
    assert len(records) == 4 and not any("reused_from" in r for r in records)


# Finding 4: one writer per directory, unique records.

def tiny_preset_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"tiny": {**TINY, "runs": TINY["runs"][:1]}}))
    return path


def bench_command(preset_file, out):
    return [sys.executable, "-m", "noisesearch.cli", "bench", "--preset", str(preset_file), "--out", str(out),
            "--no-progress"]


def test_a_second_bench_on_a_locked_directory_refuses_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with (out / LOCK).open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running bench holds it
        proc = subprocess.run(bench_command(tiny_preset_file(tmp_path), out), capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"noisesearch: another bench is writing to {out}: let it finish, or use another --out"
    assert sorted(p.name for p in out.iterdir()) == [LOCK]


def test_two_benches_started_together_write_every_record_once(tmp_path):
    out = tmp_path / "run"
    preset_file = tiny_preset_file(tmp_path)
    procs = [subprocess.Popen(bench_command(preset_file, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    finished = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(rc for rc, _ in finished)[0] == 0  # one ran (the other refused, or found everything done)
    for rc, err in finished:
        assert rc == 0 or err.strip().startswith(f"noisesearch: another bench is writing to {out}")
    raw = [json.loads(line) for line in lines(out / RESULTS)]
    assert len(raw) == len({(r["cell"], r["label_index"]) for r in raw}) == 2  # 1 run x 1 column x 2 labels


def record(**changes):
    base = {"cell": "c", "algorithm": "naive", "params": {}, "column": "b", "reward": "brightness",
            "guidance": 1.0, "repeat": 0, "label_index": 0, "label": 3, "seed": 0, "reward_value": 0.25,
            "evaluator": 0.5, "nfe": 6, "wall_time_s": 1.0, "cell_wall_time_s": 1.0, "steps": 4}
    return json.dumps({**base, **changes})


def test_duplicate_lines_count_once_and_do_not_shift_the_statistics(tmp_path):
    path = tmp_path / RESULTS
    rows = [record(label_index=0, reward_value=0.2), record(label_index=1, reward_value=0.4)]
    path.write_text("\n".join([*rows, rows[1], record(label_index=1, reward_value=9.0)]) + "\n")
    results = load_results(path)
    assert [r["reward_value"] for r in results.records] == [0.2, 0.4] and results.duplicates == 2
    stats = summarize(results.records)[("naive", "b")]
    assert stats["n"] == 2 and stats["std"] == pytest.approx(0.2 ** 0.5 / 10 ** 0.5)


def test_a_resume_over_duplicated_lines_reruns_nothing(tmp_path):
    out = tmp_path / "run"
    first = lines(bench(out))
    (out / RESULTS).write_text("\n".join(first + first) + "\n")  # e.g. two writers of an older bench
    assert lines(bench(out)) == first + first  # nothing run again, nothing appended
    assert len(read_results(out / RESULTS)) == len(first)


@pytest.mark.parametrize("bad, fragment", [
    (record(label_index="0"), '"label_index" must be an integer of at least 0, got "0"'),
    (record(reward_value="0.5"), '"reward_value" must be a finite number, got "0.5"'),
    (record(nfe=6.5), '"nfe" must be an integer of at least 0, got 6.5'),
    (record(cell=["a"]), '"cell" must be a string'),
    ('{"cell": "c", "label_index": 0}', 'the record has no "algorithm"'),
    ('{"cell": "c", oops', "not a JSON record"),
    ("[1, 2]", "a record must be a JSON object"),
])
def test_a_malformed_record_is_one_line_naming_file_and_line(tmp_path, capsys, bad, fragment):
    path = tmp_path / RESULTS
    path.write_text("\n".join([record(), bad, record(label_index=1)]) + "\n")
    with pytest.raises(NoiseSearchError) as err:
        read_results(path)
    message = str(err.value)
    assert message.startswith(f"{path}, line 2: ") and fragment in message and "\n" not in message
    (tmp_path / "preset.json").write_text(json.dumps({"preset": tiny().to_dict(), "seed": 0}))
    assert main(["report", str(tmp_path)]) == 1
    assert one_line_error(capsys) == f"noisesearch: {message}"


# Finding 8: a torn last line is skipped by readers; only the writer holding the lock cuts it.

def test_a_torn_last_line_is_skipped_and_the_file_left_alone(tmp_path):
    path = tmp_path / RESULTS
    path.write_text(record() + "\n" + record(label_index=1)[:40])
    before = path.read_bytes()
    results = load_results(path)
    assert len(results.records) == 1 and results.torn and path.read_bytes() == before


def test_bench_cuts_a_torn_last_line_before_appending(tmp_path):
    out = tmp_path / "run"
    whole = lines(bench(out))
    (out / RESULTS).write_text("\n".join(whole[:-1]) + "\n" + whole[-1][:30])  # killed mid-write
    resumed = lines(bench(out))
    assert len(resumed) == len(whole) and resumed[:-1] == whole[:-1]
    assert json.loads(resumed[-1])["cell"] == json.loads(whole[-1])["cell"]


# Findings 4, 5 and 11: presets that would make two cells of one name, or hold values of the wrong type.

@pytest.mark.parametrize("changes, fragment", [
    ({"runs": [{"algorithm": "naive"}, {"algorithm": "best_of_n", "params": {"N": 2}},
               {"algorithm": "best_of_n", "params": {"N": 2}}]}, "run best_of_n (N=2) is listed twice"),
    ({"rewards": [{"name": "b", "reward": "brightness"}, {"name": "b", "reward": "compressibility"}]},
     "two reward columns are named 'b'"),
])
def test_presets_that_would_write_one_cell_twice_are_refused(changes, fragment):
    with pytest.raises(NoiseSearchError) as err:
        tiny(**changes)
    assert str(err.value).startswith("preset 'tiny': ") and fragment in str(err.value)


@pytest.mark.parametrize("changes, fragment", [
    ({"runs": [{"algorithm": "best_of_n", "params": {"N": True}}]}, "N must be an integer, got true"),
    ({"runs": [{"algorithm": "eps_greedy", "params": {"eps": "x"}}]}, 'eps must be a number, got "x"'),
    ({"runs": [{"algorithm": "eps_greedy", "params": {"elitism": 1}}]}, "elitism must be true or false, got 1"),
    ({"runs": [{"algorithm": "naive", "params": [["N", 2]]}]}, '"params" must be a JSON object'),
    ({"runs": [{"params": {"N": 2}}]}, 'run 1 needs the "algorithm" field'),
    ({"runs": [{"algorithm": "naive", "param": {}}]}, 'run 1 has no field "param"'),
    ({"runs": "naive"}, '"runs" must be a list'),
    ({"labels": "x"}, '"labels" must be an integer, got "x"'),
    ({"labels": True}, '"labels" must be an integer, got true'),
    ({"steps": 4.5}, '"steps" must be an integer, got 4.5'),
    ({"label": 3}, 'has no field "label"'),
    ({"rewards": [{"name": "b", "reward": "brightness", "guidance": True}]}, '"guidance" must be a number'),
    ({"rewards": [{"name": "a/b", "reward": "brightness"}]}, "must be letters, digits"),
    ({"calibration": {"conditions": 2, "eps": "x"}}, 'calibration: eps must be a number or null, got "x"'),
    ({"calibration": {"conditions": 2, "seed": True}}, "calibration: seed must be an integer, got true"),
])
def test_wrongly_typed_presets_are_one_line_naming_the_preset(tmp_path, capsys, changes, fragment):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"mine": {**TINY, **changes}}))
    assert main(["bench", "--preset", str(path), "--out", str(tmp_path / "run")]) == 1
    err = one_line_error(capsys)
    assert err.startswith("noisesearch: preset 'mine'") and fragment in err
    assert not (tmp_path / "run").exists()


def test_a_directory_of_the_previous_format_is_migrated_and_resumed_without_rerunning(tmp_path):
    """Format 2 named SMC's particles K and its inverse temperature lambda_, and kept no device in run.json."""
    from noisesearch.errors import RenamedWarning
    from noisesearch.experiments.store import FORMAT, load_run, stored_records

    preset = tiny(runs=[{"algorithm": "naive"}, {"algorithm": "smc", "params": {"particles": 2,
                                                                                "inverse_temperature": 5.0}}])
    current = tmp_path / "current"
    expected = read_results(bench(current, preset))
    old = tmp_path / "old"
    (old / "images").mkdir(parents=True)
    (old / "traces").mkdir()
    settings = json.loads((current / SETTINGS).read_text())
    del settings["device"]
    (old / SETTINGS).write_text(json.dumps({**settings, "format": 2}))
    renamed = {"particles": "K", "inverse_temperature": "lambda_"}
    rows = []
    for r in expected:
        key = json.loads(r["cell"])
        key["params"] = {renamed.get(k, k): v for k, v in key["params"].items()}
        rows.append(json.dumps({**r, "cell": json.dumps(key, sort_keys=True),
                                "params": {renamed.get(k, k): v for k, v in r["params"].items()}}))
    (old / RESULTS).write_text("\n".join(rows) + "\n")
    for part in (current / "images").glob("*.npz"):
        (old / "images" / part.name.replace("particles2_inverse_temperature5.0", "K2_lambda_5.0")).write_bytes(
            part.read_bytes())
    assert {p.name.split("__")[0] for p in (old / "images").glob("*.npz")} == {"naive", "smc_K2_lambda_5.0"}
    meta = json.loads((current / "preset.json").read_text())
    meta["preset"]["budgets"] = meta["preset"].pop("target_nfes")
    for run in meta["preset"]["runs"]:
        run["params"] = {renamed.get(k, k): v for k, v in run["params"].items()}
    (old / "preset.json").write_text(json.dumps(meta))
    assert stored_records(old)[0] == expected  # read as migrated, never written
    with warnings.catch_warnings():
        warnings.simplefilter("error", RenamedWarning)  # a stored file is migrated, not warned about
        assert load_run(old).records == expected and load_run(old).preset == preset
    assert json.loads((old / SETTINGS).read_text())["format"] == 2

    assert read_results(bench(old, preset)) == expected  # every record found: nothing rerun
    assert json.loads((old / SETTINGS).read_text())["format"] == FORMAT
    assert json.loads((old / SETTINGS).read_text())["device"] == "cpu"
    assert sorted(p.name for p in (old / "images").glob("*.npz")) == sorted(
        p.name for p in (current / "images").glob("*.npz"))
    assert not (old / "cells.jsonl").exists()  # no cell ran
