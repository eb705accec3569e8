"""CLIP-based verifiers on a tiny random CLIP saved to and loaded from disk."""

import pytest
import torch
from torch.nn import functional as F

pytest.importorskip("transformers")

from tiny_pipeline import save_tiny_clip  # noqa: E402

from noisesearch import NoiseSearchError, get_reward  # noqa: E402

PROMPTS = ["a cat", "a red cube", "two dogs"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


def images(n, seed=0):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_clip_score_is_the_cosine_of_image_and_prompt_embeddings(clip_dir):
    reward = get_reward("clip", prompts=PROMPTS, model=str(clip_dir))
    x = images(3)
    scores = reward(x, torch.tensor([0, 1, 2]))
    emb_i = reward.encoder.embed_images(x)
    emb_t = reward.encoder.embed_texts(PROMPTS)
    assert torch.allclose(scores, (emb_i * emb_t).sum(-1), atol=1e-6)
    assert torch.all(scores.abs() <= 1 + 1e-6)
    swapped = reward(x, torch.tensor([2, 1, 0]))
    assert torch.allclose(swapped[0], (emb_i[0] * emb_t[2]).sum(), atol=1e-6)


def test_added_prompts_score_as_if_the_reward_was_built_with_them(clip_dir):
    """What lets the verifier service learn prompts from its requests without reloading the model."""
    x, cond, model = images(3), torch.tensor([2, 0, 1]), str(clip_dir)
    expected = get_reward("clip", prompts=PROMPTS, model=model)(x, cond)
    grown = get_reward("clip", prompts=PROMPTS[:1], model=model)
    grown.add_prompts(PROMPTS[1:])
    assert torch.allclose(grown(x, cond), expected, atol=1e-6)
    ensemble = get_reward("ensemble", members={"clip": {"model": model}, "brightness": {}}, prompts=PROMPTS[:1])
    ensemble.add_prompts(PROMPTS[1:])
    assert torch.allclose(ensemble(x, cond), (expected + get_reward("brightness")(x, cond)) / 2, atol=1e-6)


def test_clip_score_takes_grey_images(clip_dir):
    reward = get_reward("clip", prompts=PROMPTS, model=str(clip_dir))
    grey = images(2)[:, :1]
    assert torch.allclose(reward(grey, torch.tensor([0, 0])), reward(grey.expand(-1, 3, -1, -1), torch.tensor([0, 0])))


def test_aesthetic_applies_the_linear_head_to_normalised_embeddings(clip_dir, tmp_path):
    head = {"layers.0.weight": torch.eye(8)[:4], "layers.0.bias": torch.zeros(4),
            "layers.2.weight": torch.tensor([[1.0, 0.0, 0.0, 0.0]]), "layers.2.bias": torch.tensor([5.0])}
    path = tmp_path / "head.pth"
    torch.save(head, path)
    reward = get_reward("aesthetic", head=str(path), model=str(clip_dir))
    x = images(4)
    expected = F.normalize(reward.encoder.embed_images(x), dim=-1)[:, 0] + 5.0
    assert torch.allclose(reward(x, None), expected, atol=1e-6)


@pytest.mark.parametrize("name, kwargs, fragment", [
    ("clip", {"prompts": PROMPTS, "model": "/nonexistent/clip"}, "cannot load CLIP model"),
    ("clip", {"prompts": []}, "needs the prompts"),
    ("aesthetic", {"head": "/nonexistent/head.pth"}, "needs head=PATH"),
])
def test_missing_weights_are_one_line_errors(name, kwargs, fragment):
    with pytest.raises(NoiseSearchError, match=fragment) as err:
        get_reward(name, **kwargs)
    assert "\n" not in str(err.value)
