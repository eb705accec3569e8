"""Population metrics in bench and report: features kept per image, format 4 and its migration, runs with their own
steps, the population section (Ma et al.'s scaling study) and the ma_scaling presets."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_denoiser

from noisesearch.errors import NoiseSearchError
from noisesearch.experiments import population as population_module
from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.presets import Preset, builtin_presets
from noisesearch.experiments.report import write_report
from noisesearch.experiments.store import FORMAT, SETTINGS, load_run, read_results
from noisesearch.metrics.reference import load_reference, save_reference
from noisesearch.metrics.statistics import fid, precision_recall, precision_recall_draws

TINY = {"labels": 20, "steps": 3, "target_nfes": [10], "rewards": [{"name": "b", "reward": "brightness"}],
        "runs": [{"algorithm": "naive"}, {"algorithm": "naive", "steps": 6}, {"algorithm": "best_of_n",
                                                                              "params": {"N": 2}}]}


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "ref.safetensors"
    save_reference(path, torch.randn(40, 128, generator=torch.Generator().manual_seed(0)).relu(), "mnist")
    return str(path)


def test_bench_keeps_features_and_the_report_computes_the_metrics_from_them(tmp_path, reference, monkeypatch):
    monkeypatch.setattr(population_module, "DRAWS", 20)
    preset = Preset.from_dict("tiny", TINY)
    records = read_results(run_bench(preset, tmp_path / "run", progress=False, model_loader=tiny_denoiser))
    settings = json.loads((tmp_path / "run" / SETTINGS).read_text())
    assert (settings["format"], settings["extractor"], settings["reference"]) == (FORMAT, "mnist", "mnist_t10k")
    steps = {r["steps"]: r["nfe"] for r in records if r["algorithm"] == "naive"}
    assert steps == {3: 5, 6: 11} and {r.get("run_steps") for r in records} == {None, 6}  # heun: 2·steps − 1
    with np.load(tmp_path / "run" / "features" / "naive_steps6__b__r0_000.npz") as data:
        assert data["features"].shape == (20, 128) and data["features"].dtype == np.float16
        assert data["logits"].shape == (20, 10) and data["label_index"].tolist() == list(range(20))
        features = torch.from_numpy(data["features"].astype(np.float32))

    md, _ = write_report(tmp_path / "run", reference=reference)
    text = md.read_text()
    assert "| b MNIST-FID |" in text and "MNIST-precision" in text and "Population metrics against total NFE" in text
    assert (md.parent / "population_b.png").exists() and (md.parent / "population_diversity.png").exists()
    run = load_run(tmp_path / "run")
    run.reference = reference
    found = population_module.population(run).metrics[("naive (steps=6)", "b")]
    assert found["fid"].value == pytest.approx(fid(features, load_reference(reference).features))
    assert all(m.low <= m.value <= m.high for m in found.values())  # centred: about the value, resamples biased


def test_a_format_3_directory_is_migrated_and_its_cells_show_no_metrics(tmp_path, reference, monkeypatch):
    monkeypatch.setattr(population_module, "DRAWS", 10)
    old = Preset.from_dict("tiny", {**TINY, "runs": TINY["runs"][:1]})
    run_bench(old, tmp_path, progress=False, model_loader=tiny_denoiser)
    settings = json.loads((tmp_path / SETTINGS).read_text())
    del settings["extractor"], settings["reference"]
    (tmp_path / SETTINGS).write_text(json.dumps({**settings, "format": 3}))
    for part in (tmp_path / "features").glob("*.npz"):
        part.unlink()  # format 3 kept no features
    run_bench(Preset.from_dict("tiny", TINY), tmp_path, progress=False, model_loader=tiny_denoiser)
    migrated = json.loads((tmp_path / SETTINGS).read_text())
    assert (migrated["format"], migrated["extractor"]) == (FORMAT, "mnist")  # new cells keep features
    rows = {line.split(" | ")[0]: line for line in write_report(tmp_path, reference=reference)[0].read_text()
            .splitlines() if line.startswith("| naive") or line.startswith("| best_of_n")}
    assert "| — | — | — |" in rows["| naive"] and "| — |" not in rows["| best_of_n (N=2)"]


def test_precision_recall_draws_equal_the_metric_and_count_a_repeated_row_once_in_the_manifold():
    gen = torch.Generator().manual_seed(1)
    fake, real = torch.randn(30, 4, generator=gen), torch.randn(50, 4, generator=gen)
    draw = precision_recall_draws(fake, real)
    assert draw(torch.arange(30)) == pytest.approx(precision_recall(fake, real))
    twice = torch.cat([torch.arange(10), torch.arange(10)])
    assert draw(twice)[1] == pytest.approx(precision_recall(fake[:10], real)[1])


def test_run_steps_and_the_preset_seed_are_checked_in_one_line():
    for run, fragment in (({"algorithm": "naive", "steps": 0}, "steps must be at least 1"),
                          ({"algorithm": "naive", "steps": "9"}, '"steps" must be an integer'),
                          ({"algorithm": "adaptive_eps_greedy", "steps": 9,
                            "params": {"search_schedule": "calibrated"}}, "drop the run's own steps")):
        with pytest.raises(NoiseSearchError, match=fragment):
            Preset.from_dict("p", {**TINY, "calibration": {"conditions": 2}, "runs": [run]})
    with pytest.raises(NoiseSearchError, match="seed must be non-negative"):
        Preset.from_dict("p", {**TINY, "seed": -1})


def test_the_scaling_presets_match_their_budgets_and_draw_their_own_labels():
    from noisesearch.sampling import make_sampler

    presets = builtin_presets()
    for name, sampler in (("ma_scaling", "heun"), ("ma_scaling_flow", "flow_euler")):
        preset = presets[name]
        assert preset.labels == 500 and preset.seed not in {p.seed for n, p in presets.items() if n != name
                                                             and not n.startswith("ma_scaling")}
        naive = [r for r in preset.runs if r.algorithm == "naive"]
        nfe = [2 * r.steps - 1 if sampler == "heun" else r.steps for r in naive if r.steps]
        assert all(any(abs(n - b) <= 0.05 * b for b in preset.target_nfes) for n in nfe)
        assert make_sampler(sampler, max(r.steps for r in naive if r.steps)).steps <= 1152


def test_a_run_may_be_limited_to_some_reward_columns():
    data = {**TINY, "rewards": [{"name": "b", "reward": "brightness"}, {"name": "c", "reward": "compressibility"}],
            "runs": [{"algorithm": "naive"}, {"algorithm": "best_of_n", "params": {"N": 2}, "columns": ["c"]}]}
    preset = Preset.from_dict("limited", data)
    from noisesearch.experiments.cells import preset_cells
    from noisesearch.experiments.presets import override

    assert sorted((c.run.algorithm, c.column.name) for c in preset_cells(preset)) == [
        ("best_of_n", "c"), ("naive", "b"), ("naive", "c")]
    assert [r.algorithm for r in override(preset, rewards=["b"]).runs] == ["naive"]  # its only column left out
    with pytest.raises(NoiseSearchError, match="names reward column.*x, which the preset does not have"):
        Preset.from_dict("bad", {**data, "runs": [{"algorithm": "naive", "columns": ["x"]}]}).validate()
    with pytest.raises(NoiseSearchError, match="must be a non-empty list"):
        Preset.from_dict("bad", {**data, "runs": [{"algorithm": "naive", "columns": []}]})
