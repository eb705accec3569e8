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
