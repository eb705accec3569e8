"""noisesearch bench: resumable JSONL results, kill-safety, presets and one-line errors."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from noisesearch.cli import main
from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.presets import builtin_presets, get_preset, override
from noisesearch.experiments.store import FORMAT, read_results

SMALL_PRESET = {
    "small": {
        "description": "a quick grid for tests",
        "labels": 4, "repeats": 2, "steps": 6,
        "rewards": [{"name": "brightness", "reward": "brightness"},
                    {"name": "classifier_uncond", "reward": "classifier", "guidance": 0.0}],
        "runs": [{"algorithm": "naive"}, {"algorithm": "eps_greedy", "params": {"N": 2, "K": 3}},
                 {"algorithm": "beam", "params": {"N": 2, "B": 2}}],
    }
}


def bench_cmd(preset_file, out):
    return [sys.executable, "-m", "noisesearch.cli", "bench", "--preset", str(preset_file), "--out", str(out),
            "--no-progress"]


def by_key(records):
    return {(r["cell"], r["label_index"]): r for r in records}


def test_a_killed_bench_resumes_to_the_uninterrupted_result(tmp_path):
    preset_file = tmp_path / "small.json"
    preset_file.write_text(json.dumps(SMALL_PRESET))
    subprocess.run(bench_cmd(preset_file, tmp_path / "whole"), check=True, timeout=600)
    whole = by_key(read_results(tmp_path / "whole" / "results.jsonl"))
    assert len(whole) == 3 * 2 * 2 * 4  # runs x columns x repeats x labels

    killed = tmp_path / "killed"
    proc = subprocess.Popen(bench_cmd(preset_file, killed))
    results = killed / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (results.exists() and results.read_text().count("\n") >= 4):
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    partial = read_results(results)
    assert 0 < len(partial) < len(whole)
    subprocess.run(bench_cmd(preset_file, killed), check=True, timeout=600)
    resumed_records = read_results(results)
    resumed = by_key(resumed_records)
    assert len(resumed_records) == len(resumed) == len(whole)  # nothing run twice
    for key, record in whole.items():
        for field in ("reward_value", "evaluator", "nfe", "seed", "label"):
            assert resumed[key][field] == record[field]


def test_a_torn_last_line_is_skipped_by_readers_and_cut_only_by_the_writer(tmp_path):
    from noisesearch.experiments.store import cut_torn_line

    path = tmp_path / "results.jsonl"
    whole = json.dumps({"cell": "a", "algorithm": "naive", "params": {}, "column": "b", "reward": "brightness",
                        "guidance": 1.0, "repeat": 0, "label_index": 0, "label": 3, "seed": 0, "reward_value": 0.5,
                        "evaluator": None, "nfe": 6, "wall_time_s": 1.0, "steps": 6}) + "\n"
    path.write_text(whole + '{"cell": "a", "lab')
    assert [r["label_index"] for r in read_results(path)] == [0]
    assert path.read_text() == whole + '{"cell": "a", "lab'  # reading never writes
    assert cut_torn_line(path) and path.read_text() == whole and not cut_torn_line(path)


def test_presets_are_valid_and_overrides_restrict_them():
    presets = builtin_presets()
    assert {"table1", "scaling"} <= set(presets)
    table1 = presets["table1"]
    assert [c.name for c in table1.rewards] == ["brightness", "compressibility", "classifier", "classifier_uncond"]
    small = override(table1, algorithms=["naive", "beam"], rewards=["classifier"], labels=3, repeats=2)
    assert [r.algorithm for r in small.runs] == ["naive", "beam"]
    assert [c.name for c in small.rewards] == ["classifier"] and small.labels == 3 and small.repeats == 2
    adaptive = presets["adaptive"]
    one = override(adaptive, rewards=["compressibility"])
    transfer = {r.label for r in adaptive.runs
                if r.calibrated_column("compressibility") not in (None, "compressibility")}
    assert transfer and {r.label for r in one.runs} == {r.label for r in adaptive.runs} - transfer


def test_a_bench_changes_fields_of_its_presets_calibration():
    cheap = get_preset("calibration_cost")
    assert cheap.calibration.validation_conditions == 0 and cheap.calibration.beams == (1,)
    fewer = override(cheap, calibration={"conditions": 2, "moves": []})
    assert fewer.calibration == type(cheap.calibration)(**{**vars(cheap.calibration), "conditions": 2, "moves": ()})
    assert fewer.calibration.identity() != cheap.calibration.identity()  # its cells are never taken for the others


@pytest.mark.parametrize("args, fragment", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--algorithms", "foo"], "has no run of foo"),
    (["--rewards", "shiny"], "has no reward column shiny"),
    (["--labels", "0"], "labels and repeats must be at least 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda:0"], "device 'cuda:0' is not available on this machine"),
    (["--executor", "ray", "--gpus-per-cell", "1"], "--gpus-per-cell reserves GPUs that cells on the CPU would not"),
    (["--preset", "adaptive", "--calibration", "condition=5"], 'has no field "condition"'),
    (["--preset", "adaptive", "--calibration", "conditions=[5]"], "conditions"),
    (["--preset", "adaptive", "--calibration", "beams=[1,2]", "--calibration", "validation_conditions=0"],
     "choosing among beams [1, 2] needs validation runs"),
    (["--calibration", "conditions=5"], "preset 'table1' calibrates nothing"),
])
def test_bench_errors_are_one_line(tmp_path, capsys, args, fragment):
    assert main(["bench", "--out", str(tmp_path / "o"), *args]) == 1
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1


def test_an_unparsable_calibration_field_is_a_one_line_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--out", str(tmp_path / "o"), "--calibration", "conditions"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "'conditions' is not FIELD=JSON" in err and len(err.strip().splitlines()) == 1


def test_bench_out_that_is_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["bench", "--preset", "table1", "--labels", "1", "--out", str(target)]) == 1
    assert capsys.readouterr().err.strip() == f"noisesearch: --out {target} is a file: give a directory for the run"


def test_preset_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(Exception, match="not valid JSON"):
        get_preset(str(bad))


ADAPTIVE_PRESET = {
    "description": "calibration and adaptive runs on the tiny model",
    "labels": 3, "repeats": 1, "steps": 6,
    "calibration": {"conditions": 2, "N": 2, "K": 3, "eps": 0.4, "moves": [], "beams": [1]},
    "rewards": [{"name": "brightness", "reward": "brightness"},
                {"name": "compressibility", "reward": "compressibility"}],
    "runs": [{"algorithm": "naive"},
             {"algorithm": "adaptive_eps_greedy", "params": {"search_schedule": "calibrated", "target_nfe": 20}},
             {"algorithm": "adaptive_eps_greedy",
              "params": {"search_schedule": "calibrated:brightness", "target_nfe": 20}}],
}


def test_bench_calibrates_each_needed_column_once_and_runs_calibrated_schedules(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset

    preset = Preset.from_dict("adaptive_small", ADAPTIVE_PRESET)
    assert preset.calibrated_columns() == ["brightness", "compressibility"]
    run_bench(preset, tmp_path / "run", progress=False, model_loader=tiny_denoiser)
    schedules = sorted(p.name for p in (tmp_path / "run" / "schedules").iterdir())
    assert schedules == ["brightness.json", "compressibility.json"]
    info = json.loads((tmp_path / "run" / "schedules" / "brightness.json").read_text())["info"]
    assert info["reward"] == "brightness" and info["conditions"] == 2 and info["calibration_nfe"] > 0
    records = read_results(tmp_path / "run" / "results.jsonl")
    assert len(records) == 3 * 2 * 3
    assert all(r["nfe"] <= 20 for r in records if r["algorithm"] == "adaptive_eps_greedy")
    stamp = (tmp_path / "run" / "schedules" / "brightness.json").stat().st_mtime_ns
    run_bench(preset, tmp_path / "run", progress=False, model_loader=tiny_denoiser)
    assert (tmp_path / "run" / "schedules" / "brightness.json").stat().st_mtime_ns == stamp
    assert len(read_results(tmp_path / "run" / "results.jsonl")) == len(records)
    from noisesearch.experiments.report import write_report

    text = write_report(tmp_path / "run")[0].read_text()
    assert "Adaptive ε-greedy at matched compute" in text and "| brightness | final | 2 |" in text


def test_reuse_takes_schedules_and_calibrated_cells_only_from_the_same_calibration(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset

    one_column = {**ADAPTIVE_PRESET, "rewards": ADAPTIVE_PRESET["rewards"][:1], "runs": ADAPTIVE_PRESET["runs"][:2]}
    run_bench(Preset.from_dict("a", one_column), tmp_path / "a", progress=False, model_loader=tiny_denoiser)
    reused = read_results(run_bench(Preset.from_dict("a", one_column), tmp_path / "b", progress=False,
                                    model_loader=tiny_denoiser, reuse=[tmp_path / "a"]))
    assert all("reused_from" in r for r in reused) and len(reused) == 2 * 3
    made = (tmp_path / "a" / "schedules" / "brightness.json").read_text()
    assert (tmp_path / "b" / "schedules" / "brightness.json").read_text() == made
    other = {**one_column, "calibration": {**one_column["calibration"], "method": "binomial"}}
    records = read_results(run_bench(Preset.from_dict("a", other), tmp_path / "c", progress=False,
                                     model_loader=tiny_denoiser, reuse=[tmp_path / "a"]))
    assert sorted((r["algorithm"], "reused_from" in r) for r in records) == (
        [("adaptive_eps_greedy", False)] * 3 + [("naive", True)] * 3)
    assert json.loads((tmp_path / "c" / "schedules" / "brightness.json").read_text())["info"]["method"] == "binomial"


def test_reuse_copies_identical_cells_from_another_run(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset

    small = {**SMALL_PRESET["small"], "repeats": 1, "runs": SMALL_PRESET["small"]["runs"][:2]}
    run_bench(Preset.from_dict("a", small), tmp_path / "a", progress=False, model_loader=tiny_denoiser)
    wider = {**small, "labels": 3, "runs": [*small["runs"], {"algorithm": "best_of_n", "params": {"N": 2}}]}
    fresh = run_bench(Preset.from_dict("b", wider), tmp_path / "fresh", progress=False, model_loader=tiny_denoiser)
    reused = run_bench(Preset.from_dict("b", wider), tmp_path / "b", progress=False, model_loader=tiny_denoiser,
                       reuse=[tmp_path / "a"])
    records = read_results(reused)
    copied = [r for r in records if "reused_from" in r]
    assert len(copied) == 2 * 2 * 3  # naive and eps_greedy, two columns, the first 3 of a's 4 labels
    expected = by_key(read_results(fresh))
    assert by_key(records).keys() == expected.keys()
    for key, record in by_key(records).items():
        assert record["reward_value"] == expected[key]["reward_value"] and record["nfe"] == expected[key]["nfe"]
    assert main(["bench", "--preset", "table1", "--out", str(tmp_path / "c"), "--reuse", str(tmp_path)]) == 1


def test_environment_records_versions_and_the_cpu_kernels_that_round():
    import torch

    from noisesearch.environment import environment

    env = environment()
    assert env["torch"] == torch.__version__ and env["torch_threads"] == torch.get_num_threads()
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() != ""
    assert env["processor"] or not Path("/proc/cpuinfo").exists()
    assert isinstance(env["git_dirty"], bool) if env["git_commit"] else env["git_dirty"] is None


def test_cell_file_names_are_portable():
    import re

    from noisesearch.experiments.cells import preset_cells
    from noisesearch.experiments.presets import Preset

    slugs = [cell.slug for cell in preset_cells(Preset.from_dict("a", ADAPTIVE_PRESET))]
    assert "adaptive_eps_greedy_search_schedulecalibrated-brightness_target_nfe20__compressibility__r0" in slugs
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", slug) for slug in slugs) and len(set(slugs)) == len(slugs)


def test_calibration_lambda_reaches_the_schedule_and_keys_only_when_set(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.cells import preset_cells
    from noisesearch.experiments.presets import CalibrationConfig as Calibration
    from noisesearch.experiments.presets import Preset

    assert "lambda_" not in Calibration().identity() and Calibration(lambda_=0.3).identity()["lambda_"] == 0.3
    assert Calibration(moves=[[1, 0.15, 0.3]]).identity()["moves"] == ((1, 0.15, 0.3),)
    with pytest.raises(NoiseSearchError, match="triples"):
        Calibration(moves=[[1, 0.15]])
    one_move = Calibration(method="gain")  # B = 1 and no validation: fields a key leaves out at these values
    assert "beams" not in one_move.identity() and Calibration(beams=[1, 2]).identity()["beams"] == (1, 2)
    assert "validation_conditions" not in one_move.identity()
    assert Calibration(validation_conditions=64).identity()["validation_conditions"] == 64
    with pytest.raises(NoiseSearchError, match="beams"):
        Calibration(beams=[0])
    one_column = {**ADAPTIVE_PRESET, "rewards": ADAPTIVE_PRESET["rewards"][:1], "runs": ADAPTIVE_PRESET["runs"][:2]}
    wide = {**one_column, "calibration": {**one_column["calibration"], "lambda_": 0.3}}
    default_keys, wide_keys = ([c.key for c in preset_cells(Preset.from_dict("a", d))] for d in (one_column, wide))
    assert default_keys[0] == wide_keys[0] and default_keys[1] != wide_keys[1]  # only the calibrated cell differs
    run_bench(Preset.from_dict("a", wide), tmp_path / "w", progress=False, model_loader=tiny_denoiser)
    schedule = json.loads((tmp_path / "w" / "schedules" / "brightness.json").read_text())
    assert schedule["info"]["lambda_"] == 0.3


def test_bench_runs_the_sampler_asked_for_and_saves_every_trace(tmp_path):
    import numpy as np
    from conftest import tiny_denoiser

    from noisesearch import cost, get_algorithm, make_sampler
    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.cells import preset_cells
    from noisesearch.experiments.presets import Preset
    from noisesearch.experiments.report import write_report
    from noisesearch.types import TRACE_FIELDS

    preset = Preset.from_dict("traces", {
        "labels": 2, "steps": 6, "rewards": [{"name": "brightness", "reward": "brightness"}],
        "runs": [{"algorithm": "naive"}, {"algorithm": "eps_greedy", "params": {"N": 2, "K": 2}},
                 {"algorithm": "mcts", "params": {"N": 2, "S": 2}}]})
    records = read_results(run_bench(preset, tmp_path, progress=False, sampler="euler", model_loader=tiny_denoiser))
    euler = make_sampler("euler", 6)
    nfe = {(r["algorithm"], r["label_index"]): r["nfe"] for r in records}
    assert nfe["naive", 0] == nfe["naive", 1] == cost.trajectory_calls(euler) == 6  # Euler: 1 call per step
    eps = get_algorithm("eps_greedy", N=2, K=2).nfe_formula(euler)
    assert nfe["eps_greedy", 0] == nfe["eps_greedy", 1] == eps
    cells = {cell.run.algorithm: cell for cell in preset_cells(preset)}
    greedy = np.load(tmp_path / "traces" / f"{cells['eps_greedy'].slug}_000.npz")
    assert set(greedy.files) == set(TRACE_FIELDS) and set(greedy["condition"].tolist()) == {0, 1}
    tree = np.load(tmp_path / "traces" / f"{cells['mcts'].slug}_000.npz")  # MCTS's TreeTrace is saved too
    assert set(tree.files) == {"condition", "expanded_step"}
    searchable = euler.searchable_steps()
    prefix, per_sim = cost.tree_simulation_calls(euler, 2)
    for c in (0, 1):
        expanded = tree["expanded_step"][tree["condition"] == c].tolist()
        assert len(expanded) == 2 * len(searchable)  # S simulations at every searchable step
        assert set(expanded) <= {*searchable, euler.steps}
        assert nfe["mcts", c] == prefix + sum(per_sim.get(j, 0) for j in expanded)  # the trace explains the NFE
    assert write_report(tmp_path)[0].exists()  # the report reads a run with tree traces


def test_a_preset_names_its_backend_and_bench_runs_that_backends_sampler(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset

    presets = builtin_presets()
    flow, table1 = presets["table1_flow"], presets["table1"]
    assert (flow.backend, table1.backend) == ("embedded_flow", "embedded")
    assert (flow.runs, flow.rewards, flow.labels) == (table1.runs, table1.rewards, table1.labels)
    for backend, fragment in (("nope", "unknown backend 'nope'"), ("sd3", "the sd3 backend takes prompts")):
        with pytest.raises(NoiseSearchError, match=f"preset 'p'.*{fragment}"):
            Preset.from_dict("p", {"backend": backend, "rewards": [{"name": "b", "reward": "brightness"}],
                                   "runs": [{"algorithm": "naive"}]})
    preset = Preset.from_dict("p", {"backend": "embedded_flow", "labels": 1, "steps": 4,
                                    "runs": [{"algorithm": "naive"}],
                                    "rewards": [{"name": "b", "reward": "brightness"}]})
    records = read_results(run_bench(preset, tmp_path, progress=False, model_loader=tiny_denoiser))
    settings = json.loads((tmp_path / "run.json").read_text())
    assert (settings["backend"], settings["sampler"]) == ("embedded_flow", "flow_euler")
    assert [r["nfe"] for r in records] == [4]  # flow_euler: one call per step


def test_a_format_2_run_directory_without_a_device_resumes_as_a_cpu_run(tmp_path, monkeypatch):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset

    preset = Preset.from_dict("p", {"labels": 1, "steps": 4, "rewards": [{"name": "b", "reward": "brightness"}],
                                    "runs": [{"algorithm": "naive"}]})
    first = read_results(run_bench(preset, tmp_path, progress=False, model_loader=tiny_denoiser))
    settings = json.loads((tmp_path / "run.json").read_text())
    assert settings.pop("device") == "cpu" and '"device"' not in first[0]["cell"]  # CPU keys name no device
    (tmp_path / "run.json").write_text(json.dumps({**settings, "format": 2}))
    assert read_results(run_bench(preset, tmp_path, progress=False, model_loader=tiny_denoiser)) == first
    assert json.loads((tmp_path / "run.json").read_text()) == {**settings, "device": "cpu", "format": FORMAT}
    monkeypatch.setattr("noisesearch.experiments.bench.check_device", lambda device: None)  # as if it had a GPU
    with pytest.raises(NoiseSearchError, match=r'other settings \(device "cpu", not "cuda"\): use another --out'):
        run_bench(preset, tmp_path, progress=False, model_loader=tiny_denoiser, device="cuda")


def test_a_stream_cell_runs_its_labels_in_order_and_is_never_resumed_in_part(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset

    preset = Preset.from_dict("stream", {
        "labels": 4, "steps": 6, "rewards": [{"name": "brightness", "reward": "brightness"}],
        "runs": [{"algorithm": "online_adaptive_eps_greedy", "params": {"target_nfe": 40, "stream_batch": 2}}]})
    results = run_bench(preset, tmp_path / "run", progress=False, model_loader=tiny_denoiser)
    records = read_results(results)
    assert [r["label_index"] for r in records] == [0, 1, 2, 3] and max(r["nfe"] for r in records) <= 40
    assert [r["arm"] for r in records][:2] == ["N1 eps0.15 lambda0.45 B1", "N1 eps0.15 lambda0.45 B1 middle"]
    results.write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    with pytest.raises(NoiseSearchError, match="part of the stream of cell online_adaptive_eps_greedy"):
        run_bench(preset, tmp_path / "run", progress=False, model_loader=tiny_denoiser)


def test_a_bench_in_bfloat16_names_its_dtype_in_run_json_and_keys_and_resumes_only_in_it(tmp_path):
    from conftest import tiny_denoiser

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset
    from noisesearch.experiments.report import write_report

    preset = Preset.from_dict("p", {"labels": 2, "steps": 4, "rewards": [{"name": "b", "reward": "brightness"}],
                                    "runs": [{"algorithm": "naive"}]})
    half = read_results(run_bench(preset, tmp_path / "bf16", progress=False, dtype="bfloat16"))
    full = read_results(run_bench(preset, tmp_path / "fp32", progress=False))
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["dtype"] == "bfloat16"
    assert all(json.loads(r["cell"])["dtype"] == "bfloat16" for r in half)
    assert all("dtype" not in json.loads(r["cell"]) for r in full)  # float32 keys name no dtype, as before
    assert [r["reward_value"] for r in half] != [r["reward_value"] for r in full]  # the network did run in bf16
    assert "the network in bfloat16 (autocast)" in write_report(tmp_path / "bf16")[0].read_text()
    assert "the network in" not in write_report(tmp_path / "fp32")[0].read_text()
    with pytest.raises(NoiseSearchError, match=r'other settings \(dtype "bfloat16", not "float32"\)'):
        run_bench(preset, tmp_path / "bf16", progress=False)
    with pytest.raises(NoiseSearchError, match="unknown dtype 'half'"):
        run_bench(preset, tmp_path / "other", progress=False, dtype="half")
    with pytest.raises(NoiseSearchError, match="cannot run a model_loader's model in bfloat16"):
        run_bench(preset, tmp_path / "other", progress=False, model_loader=tiny_denoiser, dtype="bfloat16")
    assert not (tmp_path / "other").exists()
