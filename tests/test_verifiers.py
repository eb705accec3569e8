"""Ma et al.'s supervised and self-supervised verifiers: the clip and dino feature extractors, dino_linear and
clip_zeroshot on tiny random transformers models saved to disk, and the ssl_* rewards with the x0 prediction the
Problem hands them (no extra NFE, the nearest step's, refused where it cannot be paired)."""

import json

import pytest
import torch
from torch.nn import functional as F

from noisesearch import NoiseSearchError, get_algorithm, get_reward, make_sampler, search
from noisesearch.metrics import get_extractor, plan_metrics
from noisesearch.metrics.transformer_features import IMAGENET_MEAN, IMAGENET_STD, pixel_values
from noisesearch.problem import Problem
from noisesearch.rewards.imagenet import load_zeroshot
from noisesearch.search.base import run_steps
from noisesearch.testing import tiny_denoiser

transformers = pytest.importorskip("transformers")

from tiny_pipeline import save_tiny_clip  # noqa: E402

WIDTH, CLASSES = 16, 5


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = transformers.Dinov2Config(hidden_size=WIDTH, num_hidden_layers=4, num_attention_heads=2,
                                       intermediate_size=32, patch_size=4, image_size=16)
    path = tmp_path_factory.mktemp("dino") / "dino"
    transformers.Dinov2Model(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    gen = torch.Generator().manual_seed(1)
    path = tmp_path_factory.mktemp("head") / "dinov2_tiny_linear4_head.pth"
    torch.save({"weight": torch.randn(CLASSES, 5 * WIDTH, generator=gen), "bias": torch.randn(CLASSES, generator=gen)},
               path)
    return path


def images(n, channels=3, seed=0):
    return torch.rand(n, channels, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_dino_features_are_the_last_layers_normed_class_token(dino_dir):
    extractor = get_extractor("dino", model=str(dino_dir), size=16)
    model = transformers.Dinov2Model.from_pretrained(str(dino_dir)).eval()
    x = images(3)
    with torch.no_grad():
        out = model(pixel_values=pixel_values(x, 16, IMAGENET_MEAN, IMAGENET_STD))
    assert extractor.dim == WIDTH
    assert torch.allclose(extractor.features(x), out.last_hidden_state[:, 0], atol=1e-6)
    assert torch.allclose(extractor.last_layers(x, 4)[-1], out.last_hidden_state, atol=1e-6)


def test_clip_features_are_the_image_embeddings_and_the_clip_reward_normalises_them(clip_dir):
    extractor = get_extractor("clip", model=str(clip_dir))
    x = images(2, channels=1)
    assert extractor.features(x).shape == (2, extractor.dim)
    reward = get_reward("clip", prompts=["a cat"], model=str(clip_dir))
    assert torch.allclose(reward.encoder.embed_images(x), F.normalize(extractor.features(x), dim=-1), atol=1e-6)
    with pytest.raises(NoiseSearchError, match="no classifier"):
        extractor.logits(x)
    with pytest.raises(NoiseSearchError, match="is needs a classifier's logits, which the 'clip' extractor has not"):
        plan_metrics("is", 20, "clip", features_args={"model": str(clip_dir)})  # before the search, not after it


def test_dino_linear_is_the_linear4_heads_logit_of_the_class(dino_dir, head):
    reward = get_reward("dino_linear", model=str(dino_dir), head=str(head), size=16)
    x = images(4)
    state = torch.load(head)
    with torch.no_grad():  # Meta's _LinearClassifierWrapper (layers=4), on the transformers model
        model = transformers.Dinov2Model.from_pretrained(str(dino_dir)).eval()
        hidden = model(pixel_values=pixel_values(x, 16, IMAGENET_MEAN, IMAGENET_STD),
                       output_hidden_states=True).hidden_states
        normed = [model.layernorm(h) for h in hidden[-4:]]
        logits = F.linear(torch.cat([h[:, 0] for h in normed] + [normed[-1][:, 1:].mean(1)], 1),
                          state["weight"], state["bias"])
    cond = torch.tensor([0, 4, 2, 2])
    assert torch.allclose(reward(x, cond), logits[torch.arange(4), cond], atol=1e-5)


def test_clip_zeroshot_is_the_scaled_cosine_with_the_mean_prompt_embedding(clip_dir, tmp_path):
    classes, templates = ["cat", "red cube", "dog"], ["a photo of a {}.", "a {} drawn"]
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({"classes": classes, "templates": templates}))
    reward = get_reward("clip_zeroshot", model=str(clip_dir), classes=str(path))
    enc = reward.encoder
    embedded = torch.stack([F.normalize(enc.embed_texts([t.format(c) for t in templates]).mean(0), dim=0)
                            for c in classes])
    x, cond = images(3), torch.tensor([2, 0, 1])
    expected = enc.clip.logit_scale.exp() * (enc.embed_images(x) * embedded[cond]).sum(-1)
    assert torch.allclose(reward(x, cond), expected, atol=1e-5)


def test_the_packaged_imagenet_prompts_are_radford_et_als():
    classes, templates = load_zeroshot()
    assert (len(classes), len(templates)) == (1000, 80)
    assert classes[0] == "tench" and templates[0] == "a bad photo of a {}."


@pytest.mark.parametrize("name, kwargs, fragment", [
    ("dino_linear", {"head": "/nonexistent/head.pth", "model": "x"}, "needs head=PATH"),
    ("dino_linear", {"head": "HEAD"}, "needs model=PATH"),
    ("dino_linear", {"head": "BAD_KEYS", "model": "DINO"}, "needs the keys weight and bias"),
    ("dino_linear", {"head": "NARROW", "model": "DINO"}, "do not fit a DINOv2 of width 16"),
    ("dino_linear", {"head": "HEAD", "model": "/nonexistent/dino"}, "cannot load DINOv2 model"),
    ("clip_zeroshot", {"classes": "/nonexistent/classes.json"}, "cannot read the classes file"),
    ("clip_zeroshot", {"classes": "NO_PLACEHOLDER"}, "needs one {} for the class name"),
    ("ssl_mnist", {"sigma": -1.0}, "sigma must be a positive number"),
    ("ssl_dino", {}, "needs model=PATH"),
])
def test_bad_weights_and_settings_are_one_line_errors(name, kwargs, fragment, head, dino_dir, tmp_path):
    files = {"HEAD": str(head), "DINO": str(dino_dir), "BAD_KEYS": tmp_path / "keys.pth",
             "NARROW": tmp_path / "narrow.pth", "NO_PLACEHOLDER": tmp_path / "classes.json"}
    torch.save({"linear.weight": torch.zeros(2, 80)}, files["BAD_KEYS"])
    torch.save({"weight": torch.zeros(2, 16), "bias": torch.zeros(2)}, files["NARROW"])
    files["NO_PLACEHOLDER"].write_text(json.dumps({"classes": ["a"], "templates": ["a photo"]}))
    with pytest.raises(NoiseSearchError, match=fragment) as err:
        get_reward(name, **{k: str(files.get(v, v)) if isinstance(v, str) else v for k, v in kwargs.items()})
    assert "\n" not in str(err.value)


def test_a_class_index_out_of_range_is_one_line(dino_dir, head):
    reward = get_reward("dino_linear", model=str(dino_dir), head=str(head), size=16)
    with pytest.raises(NoiseSearchError, match="label 5 is outside 0-4"):
        reward(images(1), torch.tensor([5]))


def test_ssl_is_the_feature_cosine_of_image_and_x0():
    reward = get_reward("ssl_mnist")
    x, early = torch.rand(3, 1, 28, 28) * 2 - 1, torch.rand(3, 1, 28, 28) * 2 - 1
    features = get_extractor("mnist")
    assert torch.allclose(reward(x, None, early), F.cosine_similarity(features.features(x), features.features(early)))
    assert torch.allclose(reward(x, None, x), torch.ones(3))


def test_the_x0_step_is_the_one_whose_sigma_hat_is_nearest():
    sampler, denoiser = make_sampler("heun", 18), tiny_denoiser()
    steps = {sigma: Problem(denoiser, get_reward("ssl_mnist", sigma=sigma), torch.tensor([1]), [0], sampler).x0_step
             for sigma in (0.4, 1.0, 30.0)}
    assert steps == {s: int((sampler.sigma_hats - s).abs().argmin()) for s in steps}
    assert steps[0.4] == 12 and abs(float(sampler.sigma_hats[12]) - 0.4) < 0.05  # EDM's 18 steps: sigma_hat 0.419


def test_best_of_n_hands_ssl_the_x0_of_a_manual_rollout_at_no_extra_nfe():
    sampler, reward = make_sampler("heun", 6), get_reward("ssl_mnist", sigma=1.0)
    labels, seeds = torch.tensor([3, 7]), [11, 12]
    problem = Problem(tiny_denoiser(), reward, labels, seeds, sampler)
    algorithm = get_algorithm("best_of_n", N=3)
    result = algorithm.run(problem)
    assert torch.equal(result.nfe, torch.full((2,), algorithm.nfe_formula(sampler)))
    manual = Problem(tiny_denoiser(), reward, labels, seeds, sampler)
    gens, step = manual.generators(), manual.x0_step
    x, x0 = run_steps(manual, gens, manual.initial_state(gens.randn(3, 1, 28, 28)), 0, step + 1)
    x, _ = run_steps(manual, gens, x, step + 1, sampler.steps)
    scores = reward(x.flatten(0, 1).clamp(-1, 1), None, x0.flatten(0, 1).clamp(-1, 1)).reshape(2, 3)
    assert torch.equal(result.rewards, scores.max(dim=1).values)
    assert torch.equal(result.images, x[torch.arange(2), scores.argmax(dim=1)].clamp(-1, 1))


def test_searches_that_cannot_pair_ssl_refuse_before_the_model_loads():
    with pytest.raises(NoiseSearchError, match="use best_of_n, naive, ses, zero_order_initial") as err:
        search(algorithm="paths", reward="ssl_mnist", labels=[1], seeds=[0], model="/nonexistent/model")
    assert "\n" not in str(err.value)
    with pytest.raises(NoiseSearchError, match="cannot be the evaluator"):
        search(algorithm="naive", reward="classifier", evaluator="ssl_mnist", labels=[1], seeds=[0])
    from noisesearch.drivers.reliability import measure_reliability

    with pytest.raises(NoiseSearchError, match="scores intermediate states"):
        measure_reliability(["ssl_mnist"])


def test_spearman_ranks_with_average_ties():
    from noisesearch.drivers.ssl_correlation import spearman

    assert spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 30.0, 20.0, 40.0])) == pytest.approx(0.8)
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([5.0, 5.0, 9.0])) == pytest.approx(1.0, abs=1e-5)


def test_the_fig5_correlation_driver_on_a_few_samples():
    from noisesearch.drivers.ssl_correlation import ssl_correlation

    out = ssl_correlation(per_class=2, draws=20, steps=6)
    assert out["n"] == 20 and out["nfe_per_image"] == 11  # naive Heun, 6 steps: 2·6 − 1
    for name in ("logit", "probability"):
        low, high = out[f"interval_{name}"]
        assert -1 <= low <= high <= 1 and -1 <= out[f"spearman_{name}"] <= 1
    with pytest.raises(NoiseSearchError, match="per_class"):
        ssl_correlation(per_class=1)
