"""The weights shipped in the package: they load offline and do what their model cards say."""

import sys
from pathlib import Path

import pytest
import torch
from test_contract import CASES, for_sampler

from noisesearch import load_model, make_sampler, search
from noisesearch.assets import load_card
from noisesearch.rewards.classifier import ClassifierProbability
from noisesearch.search import get_algorithm
from noisesearch.testing import LABELS, SEEDS, Contract

TRAINING = Path(__file__).resolve().parents[1] / "training"
sys.path.insert(0, str(TRAINING))
from mnist_data import DEFAULT_DIR, load_mnist  # noqa: E402


@pytest.fixture(scope="module")
def mnist():
    if not DEFAULT_DIR.exists():
        pytest.skip("../shared/data/mnist is only on the project's machines")
    images, labels, _ = load_mnist()
    return images, labels


@pytest.mark.parametrize("name, held_out", [("verifier", slice(5000, 10000)), ("evaluator", slice(0, 5000))])
def test_classifiers_are_97_percent_accurate_on_the_half_they_never_saw(mnist, name, held_out):
    images, labels = mnist
    clf = ClassifierProbability(name)
    with torch.no_grad():
        pred = clf.model(images[held_out]).argmax(1)
    assert (pred == labels[held_out]).float().mean().item() >= 0.97


def test_diffusion_model_is_small_has_a_card_and_needs_no_data():
    card = load_card("diffusion")
    model = load_model()
    assert sum(p.numel() for p in model.model.parameters()) <= 2_000_000
    assert card["architecture"]["sigma_data"] == 0.5
    assert card["data"]["md5"]["t10k-images-idx3-ubyte.gz"] == "9fb629c4189551a2d022fa330f9573f3"
    assert card["quality"]["evaluator_agreement"] >= 0.9


def test_naive_samples_are_recognised_as_their_label_by_the_evaluator():
    labels = list(range(10)) * 2
    result = search(algorithm="naive", reward="classifier", labels=labels, seed=0)
    agree = result.evaluator_rewards > 0.5
    assert agree.float().mean().item() >= 0.8


def test_flow_model_has_a_card_with_its_measured_quality():
    card = load_card("flow")
    model = load_model(kind="flow")
    assert sum(p.numel() for p in model.model.parameters()) == card["architecture"]["parameters"] <= 2_000_000
    assert card["quality"]["nfe_per_image"] == 18 and card["quality"]["evaluator_agreement"] >= 0.9


def test_naive_flow_samples_are_recognised_as_their_label_by_the_evaluator():
    result = search(algorithm="naive", reward="classifier", labels=list(range(10)) * 2, seed=0,
                    backend="embedded_flow")
    assert int(result.nfe[0]) == 18  # flow_euler's 18 steps, one call each (heun's would be 35)
    assert (result.evaluator_rewards > 0.5).float().mean().item() >= 0.85


@pytest.fixture(scope="module")
def flow_model():
    return load_model(kind="flow")


@pytest.mark.parametrize("case", sorted(CASES))
def test_contract_on_the_trained_flow_model(case, flow_model):
    name, params = CASES[case]
    sampler = make_sampler("flow_euler", 4)
    Contract(get_algorithm(name, **for_sampler(params, sampler)), sampler, flow_model,
             labels=LABELS[:4], seeds=SEEDS[:4]).check_all()


def broken_model_dir(tmp_path: Path, broken: str) -> Path:
    """A copy of the packaged diffusion model's directory with one thing wrong."""
    import shutil

    from safetensors.torch import load_file, save_file

    from noisesearch.assets import assets_dir

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("diffusion.json", "diffusion.safetensors"):
        shutil.copy(assets_dir() / name, folder / name)
    card, weights = folder / "diffusion.json", folder / "diffusion.safetensors"
    if broken == "card_not_json":
        card.write_text('{"architecture": {"channels": [32, 64, 96],}')
    elif broken == "card_a_list":
        card.write_text("[1, 2]")
    elif broken == "card_not_utf8":
        card.write_bytes(b'{"name": "\xff"}')
    elif broken == "architecture_a_list":
        card.write_text('{"architecture": [32, 64, 96]}')
    elif broken == "architecture_unbuildable":
        card.write_text('{"architecture": {"channels": 32}}')
    elif broken == "architecture_other":
        card.write_text('{"architecture": {"channels": [16, 32, 48]}}')
    elif broken == "weights_corrupt":
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    elif broken == "weights_truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif broken in ("weights_wrong_shape", "weights_missing_tensor"):  # the first tensor reshaped or dropped
        state = load_file(str(weights))
        key = next(iter(state))
        if broken == "weights_wrong_shape":
            state[key] = torch.zeros(3, 5)
        else:
            del state[key]
        save_file(state, str(weights))
    return folder


@pytest.mark.parametrize("broken, message", [
    ("card_not_json", "model card {dir}/diffusion.json is not valid JSON (Expecting property name enclosed in double "
                      "quotes at line 1"),
    ("card_a_list", "model card {dir}/diffusion.json must be a JSON object, got a JSON list"),
    ("card_not_utf8", "model card {dir}/diffusion.json is not UTF-8 text"),
    ("architecture_a_list", "model card {dir}/diffusion.json: 'architecture' must be a JSON object, got [32, 64, 96]"),
    ("architecture_unbuildable", "model card {dir}/diffusion.json: its architecture {{'channels': 32}} does not build "
                                 "the UNet ("),
    ("architecture_other", "weights {dir}/diffusion.safetensors do not fit the architecture of {dir}/diffusion.json: "
                           "tensor "),
    ("weights_corrupt", "weights {dir}/diffusion.safetensors are not a readable safetensors file ("),
    ("weights_truncated", "weights {dir}/diffusion.safetensors are not a readable safetensors file ("),
    ("weights_wrong_shape", "weights {dir}/diffusion.safetensors do not fit the architecture of {dir}/diffusion.json: "
                            "tensor {key} has shape [3, 5], the architecture needs ["),
    ("weights_missing_tensor", "weights {dir}/diffusion.safetensors do not fit the architecture of "
                               "{dir}/diffusion.json: tensor {key} is missing"),
])
def test_a_broken_model_directory_is_a_one_line_error_naming_the_file(broken, message, tmp_path, capsys):
    from safetensors.torch import load_file

    from noisesearch import NoiseSearchError
    from noisesearch.assets import assets_dir
    from noisesearch.cli import main

    folder = broken_model_dir(tmp_path, broken)
    expected = message.format(dir=folder, key=next(iter(load_file(str(assets_dir() / "diffusion.safetensors")))))
    with pytest.raises(NoiseSearchError) as err:
        load_model(weights_dir=folder)
    assert expected in str(err.value) and len(str(err.value).splitlines()) == 1, str(err.value)
    out = tmp_path / "o"
    assert main(["sample", "--model", str(folder), "--steps", "3", "--no-progress", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1 and not out.exists()
