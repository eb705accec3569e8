"""Ma et al.'s oracle verifiers: is_oracle, the set-level fid_oracle (its staged FID against a from-scratch one), the
registry's oracle and set-level flags, and the one-line refusals of what cannot search a set-level reward."""

import pytest
import torch

from noisesearch import NoiseSearchError, get_reward, search
from noisesearch.drivers import calibrate, search_online
from noisesearch.drivers.reliability import measure_reliability
from noisesearch.metrics import features
from noisesearch.metrics.reference import save_reference
from noisesearch.metrics.statistics import fid, frechet_distance, moments
from noisesearch.rewards.registry import check_evaluator, is_oracle, is_set_level, reward_kinds
from noisesearch.testing import SetLevelToy


class QuadrantMeans:
    """A toy extractor: the means of an image's four quadrants (d = 4), so covariances are well conditioned."""

    name, dim = "quadrants", 4

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.avg_pool2d(images, images.shape[-1] // 2).flatten(1)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


@pytest.fixture
def quadrant_oracle(tmp_path, monkeypatch):
    """fid_oracle on QuadrantMeans (registered for this test only) with warmup 5, and its reference features."""
    monkeypatch.setitem(features._EXTRACTORS, "quadrants", QuadrantMeans)
    reference = torch.randn(200, 4, generator=torch.Generator().manual_seed(0)) * torch.tensor([1.0, 2.0, 0.5, 1.0])
    save_reference(tmp_path / "ref.safetensors", reference, "quadrants")
    return get_reward("fid_oracle", reference=tmp_path / "ref.safetensors", features="quadrants", warmup=5), reference


def images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_the_registry_flags_oracles_and_set_level_rewards():
    assert is_oracle("is_oracle") and is_oracle("fid_oracle") and not is_oracle("classifier")
    assert is_set_level("fid_oracle") and is_set_level(SetLevelToy()) and not is_set_level("is_oracle")
    assert any(k.startswith("oracle") for k in reward_kinds("is_oracle")) and reward_kinds("brightness") == []
    with pytest.raises(NoiseSearchError, match="set-level"):
        check_evaluator("fid_oracle")  # it scores no single final image


def test_is_oracle_on_mnist_is_the_held_out_evaluators_probability():
    batch = images(6, 1).repeat(1, 1, 4, 4)[..., :28, :28]
    labels = torch.tensor([0, 3, 5, 7, 9, 1])
    assert torch.allclose(get_reward("is_oracle")(batch, labels), get_reward("evaluator")(batch, labels))


def test_fid_oracle_scores_minus_the_fid_of_the_set_with_each_candidate(quadrant_oracle):
    oracle, reference = quadrant_oracle
    chosen, candidates = images(9, 2), images(3, 3)
    for start in range(0, 9, 4):  # committed in parts of 4, 4 and 1: the running moments merge exactly
        oracle.commit(chosen[start:start + 4], torch.zeros(len(chosen[start:start + 4])))
    scores = oracle(candidates, torch.zeros(3))
    f, ref = QuadrantMeans().features(chosen).double(), moments(reference)
    for b in range(3):
        scratch = frechet_distance(*moments(torch.cat([f, QuadrantMeans().features(candidates[b:b + 1]).double()])),
                                   *ref)
        assert abs(float(scores[b]) + scratch) < 1e-6
    oracle.reset()
    first = oracle(candidates, torch.zeros(3))
    assert torch.allclose(first, -(QuadrantMeans().features(candidates).double() - ref[0]).square().sum(1))


def test_fid_oracle_scores_the_mean_term_alone_during_its_warmup(quadrant_oracle):
    oracle, reference = quadrant_oracle
    chosen, candidates = images(4, 4), images(2, 5)
    oracle.commit(chosen, torch.zeros(4))  # 4 chosen: still below warmup = 5
    f = QuadrantMeans().features(torch.cat([chosen[None].expand(2, -1, -1, -1, -1), candidates[:, None]], 1)
                                 .flatten(0, 1)).double().reshape(2, 5, 4)
    expected = -(f.mean(1) - reference.double().mean(0)).square().sum(1)
    assert torch.allclose(oracle(candidates, torch.zeros(2)), expected, atol=1e-12)
    oracle.commit(candidates[:1], torch.zeros(1))  # 5 chosen: the full FID from now on
    assert oracle.count == 5 and not torch.allclose(oracle(candidates, torch.zeros(2))[1:], expected[1:])


def test_fid_oracle_refuses_a_reference_of_another_extractor_and_a_bad_warmup(tmp_path, quadrant_oracle):
    save_reference(tmp_path / "other.safetensors", torch.zeros(3, 4), "quadrants")
    with pytest.raises(NoiseSearchError, match="not of 'mnist'"):
        get_reward("fid_oracle", reference=tmp_path / "other.safetensors")
    with pytest.raises(NoiseSearchError, match="warmup must be an integer of at least 1"):
        get_reward("fid_oracle", reference=tmp_path / "ref.safetensors", features="quadrants", warmup=0)


def test_random_search_with_the_fid_oracle_lowers_the_sets_fid(tmp_path):
    extractor = features.get_extractor("mnist")
    common = {"steps": 4, "evaluator": None}
    real = search(algorithm="naive", reward="brightness", labels=list(range(10)) * 3, seed=1000, **common).images
    save_reference(tmp_path / "ref.safetensors", extractor.features(real), "mnist")
    oracle = {"reward": "fid_oracle", "reward_args": {"reference": tmp_path / "ref.safetensors", "warmup": 3}}
    labels = [k % 10 for k in range(12)]
    naive = search(algorithm="naive", labels=labels, **oracle, **common)
    chosen = search(algorithm="best_of_n", N=4, labels=labels, **oracle, **common)
    reference = extractor.features(real)
    assert fid(extractor.features(chosen.images), reference) < fid(extractor.features(naive.images), reference)
    assert chosen.rewards[-1] > naive.rewards[-1]  # the last reward is minus the whole set's FID


def test_what_cannot_search_a_set_level_reward_refuses_in_one_line(denoiser, tmp_path):
    with pytest.raises(NoiseSearchError, match="online_adaptive_eps_greedy learns across batches") as err:
        search(algorithm="online_adaptive_eps_greedy", target_nfe=30, reward=SetLevelToy(), denoiser=denoiser)
    assert "\n" not in str(err.value)
    with pytest.raises(NoiseSearchError, match="calibrate cannot use the set-level reward 'set_level_toy'"):
        calibrate(SetLevelToy(), denoiser=denoiser)
    with pytest.raises(NoiseSearchError, match="reliability measurement cannot use the set-level reward"):
        measure_reliability(["fid_oracle"], denoiser=denoiser)
    with pytest.raises(NoiseSearchError, match="online search cannot use the set-level reward 'fid_oracle'"):
        search_online(state=tmp_path / "state.json", target_nfe=30, reward="fid_oracle", denoiser=denoiser)
    assert not (tmp_path / "state.json").exists()


def test_the_results_section_says_an_oracle_column_is_not_held_out():
    from noisesearch.experiments.sections.results import oracle_note

    records = [{"column": "oracle", "reward": "is_oracle"}, {"column": "verifier", "reward": "classifier"}]
    (note,) = oracle_note(records)
    assert "Column oracle searched with an oracle verifier" in note.text and "not held out" in note.text
    assert oracle_note(records[1:]) == []


def test_bench_runs_a_set_level_cell_in_order_and_never_resumes_it_in_part(tmp_path, monkeypatch):
    import json

    from noisesearch.experiments.bench import run_bench
    from noisesearch.experiments.presets import Preset
    from noisesearch.experiments.store import read_results
    from noisesearch.rewards import registry
    from noisesearch.testing import tiny_denoiser

    monkeypatch.setitem(registry._REWARDS, "set_level_toy", SetLevelToy)
    preset = Preset.from_dict("set", {"labels": 3, "steps": 4, "rewards": [{"name": "toy", "reward": "set_level_toy"}],
                                      "runs": [{"algorithm": "best_of_n", "params": {"N": 2}}]})
    results = run_bench(preset, tmp_path / "run", progress=False, model_loader=tiny_denoiser)
    records = read_results(results)
    assert [r["label_index"] for r in records] == [0, 1, 2]
    results.write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    with pytest.raises(NoiseSearchError, match="part of the stream of cell best_of_n"):
        run_bench(preset, tmp_path / "run", progress=False, model_loader=tiny_denoiser)
