import pytest
import torch

from noisesearch import NoiseSearchError, get_reward
from noisesearch.rewards import reward_names


def test_registry_has_the_four_rewards_and_rejects_unknown_names():
    assert set(reward_names()) >= {"brightness", "compressibility", "classifier", "evaluator"}
    with pytest.raises(NoiseSearchError, match="unknown reward 'shiny'"):
        get_reward("shiny")


def test_brightness_of_black_grey_and_white():
    images = torch.stack([torch.full((1, 8, 8), v) for v in (-1.0, 0.0, 1.0)])
    assert get_reward("brightness")(images, None).tolist() == [0.0, 0.5, 1.0]


def test_flat_image_is_more_compressible_than_noise():
    g = torch.Generator().manual_seed(0)
    flat = torch.full((1, 1, 28, 28), 0.3)
    noise = torch.rand(1, 1, 28, 28, generator=g) * 2 - 1
    r = get_reward("compressibility")(torch.cat([flat, noise]), None)
    assert r[0] > 0.9 and r[1] < 0.1
    assert r[0] > r[1]


def test_compressibility_prefers_smooth_digits_over_speckled_ones():
    smooth = torch.full((1, 1, 28, 28), -1.0)
    smooth[..., 8:20, 12:16] = 1.0
    speckled = smooth.clone()
    speckled[..., ::3, ::3] = 1.0
    r = get_reward("compressibility")(torch.cat([smooth, speckled]), None)
    assert r[0] > r[1]


@pytest.mark.parametrize("name", ["classifier", "evaluator"])
def test_classifier_rewards_are_probabilities_of_the_label(name):
    reward = get_reward(name)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 1, 28, 28, generator=g) * 2 - 1
    probs = reward(image.expand(10, -1, -1, -1), torch.arange(10))
    assert torch.all((probs >= 0) & (probs <= 1))
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_classifier_reward_rejects_wrong_shapes_and_labels():
    reward = get_reward("classifier")
    with pytest.raises(NoiseSearchError, match="1x28x28"):
        reward(torch.zeros(2, 3, 32, 32), torch.tensor([1, 2]))
    with pytest.raises(NoiseSearchError, match="outside 0-9"):
        reward(torch.zeros(1, 1, 28, 28), torch.tensor([10]))


def test_ensemble_averages_member_ranks_among_reference_scores():
    reference = {"brightness": [0.1, 0.2, 0.3, 0.4], "compressibility": [0.5, 0.6, 0.7, 0.8]}
    ens = get_reward("ensemble", members='{"brightness": {}, "compressibility": {}}', reference=reference)
    images = torch.stack([torch.full((1, 28, 28), v) for v in (-1.0, -0.5, 0.0)])
    b = get_reward("brightness")(images, None)
    c = get_reward("compressibility")(images, None)
    rank = lambda s, ref: (torch.tensor(ref)[None] <= s[:, None]).double().mean(1)  # noqa: E731
    expected = (rank(b, reference["brightness"]) + rank(c, reference["compressibility"])) / 2
    assert torch.allclose(ens(images, None), expected.float())
    plain = get_reward("ensemble", members={"brightness": {}, "compressibility": {}})
    assert torch.allclose(plain(images, None), (b + c) / 2)


@pytest.mark.parametrize("kwargs, fragment", [
    ({}, "needs two or more members"),
    ({"members": "not json"}, "must be a JSON object"),
    ({"members": {"brightness": {}, "compressibility": {}}, "reference": {"brightness": [0.5]}}, "mismatch"),
])
def test_ensemble_errors_are_user_errors(kwargs, fragment):
    with pytest.raises(NoiseSearchError, match=fragment):
        get_reward("ensemble", **kwargs)


def test_check_labels_names_the_first_label_outside_the_networks_range():
    from noisesearch.models.labels import check_labels

    assert check_labels([0, 9]).dtype == torch.long and check_labels(torch.tensor([3])).tolist() == [3]
    with pytest.raises(NoiseSearchError, match="label 10 is outside 0-9: MNIST labels are digits 0 to 9"):
        check_labels([1, 10, 11])
    assert check_labels([4], label_dim=5).tolist() == [4]
    with pytest.raises(NoiseSearchError, match="label 5 is outside 0-4: this network's labels are 0 to 4"):
        check_labels([5], label_dim=5)
    with pytest.raises(NoiseSearchError, match="label -1 is outside"):
        check_labels([-1])
    assert check_labels([0], label_dim=0).tolist() == [0]  # an unconditional network takes label 0 only
    with pytest.raises(NoiseSearchError, match="label 1 is outside 0-0"):
        check_labels([1], label_dim=0)


def test_the_evaluator_is_declared_scoring_only_and_refused_as_a_search_reward():
    from noisesearch.rewards.registry import check_search_reward, is_scoring_only

    assert [name for name in reward_names() if is_scoring_only(name)] == ["evaluator"]
    check_search_reward("classifier")
    with pytest.raises(NoiseSearchError, match="is scoring-only .* e.g. aesthetic, brightness, classifier"):
        check_search_reward("evaluator")
    with pytest.raises(NoiseSearchError, match="unknown reward 'nosuch'"):
        check_search_reward("nosuch")
    with pytest.raises(NoiseSearchError, match="a reward name must be a string, got a list"):
        check_search_reward(["classifier"])


def test_classifier_weights_that_do_not_fit_or_do_not_read_are_one_line_errors_naming_the_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "verifier.safetensors"
    save_file({"stem.weight": torch.zeros(2)}, str(path))
    with pytest.raises(NoiseSearchError, match=f"weights {path} do not fit the digit classifier: tensor "):
        get_reward("classifier", weights_dir=tmp_path)
    path.write_bytes(b"not safetensors")
    with pytest.raises(NoiseSearchError, match=f"weights {path} are not a readable safetensors file"):
        get_reward("classifier", weights_dir=tmp_path)
