"""EDM-style user networks through the edm backend."""

import pytest
import torch
from edm_toy_net import ToyEDMPrecond
from test_contract import CASES
from test_trust_model_code import TOY_GLOBALS

from noisesearch import NoiseSearchError, Problem, get_algorithm, get_reward
from noisesearch.backends.edm_network import EDMNetworkDenoiser, load_edm_network


@pytest.fixture(scope="module")
def net_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("edm") / "net.pt"
    torch.save({"ema": ToyEDMPrecond()}, path)
    return path


def test_loaded_network_passes_one_hot_labels(net_file):
    denoiser = load_edm_network(net_file, trust_model_code=True)
    x, sigma = torch.randn(3, 3, 8, 8), torch.tensor([0.5, 2.0, 10.0])
    labels = torch.tensor([0, 3, 4])
    expected = denoiser.net(x, sigma, torch.nn.functional.one_hot(labels, 5).float())
    assert torch.equal(denoiser(x, sigma, labels), expected)
    assert denoiser.image_shape == (3, 8, 8)


@pytest.mark.parametrize("case", ["naive", "eps_greedy", "beam", "mcts"])
def test_algorithms_run_on_an_edm_network(net_file, case):
    name, params = CASES[case]
    denoiser = load_edm_network(net_file, trust_model_code=True)
    problem = Problem(denoiser, get_reward("brightness"), torch.tensor([1, 2]), [0, 1],
                      denoiser.default_sampler("heun", 6))
    algo = get_algorithm(name, **params)
    result = algo.run(problem)
    assert result.images.shape == (2, 3, 8, 8)
    assert torch.equal(result.nfe, algo.expected_calls(problem.sampler, result))


def test_bad_networks_are_one_line_errors(tmp_path):
    with pytest.raises(NoiseSearchError, match="not found"):
        load_edm_network(tmp_path / "missing.pkl")
    with pytest.raises(NoiseSearchError, match="no attribute 'img_channels'"):
        EDMNetworkDenoiser(torch.nn.Linear(2, 2))
    path = tmp_path / "weights.pt"
    torch.save({"ema": {"w": torch.zeros(1)}}, path)
    with pytest.raises(NoiseSearchError, match="holds no network module"):
        load_edm_network(path)


def test_search_api_drives_the_edm_backend(net_file):
    from noisesearch import search

    with torch.serialization.safe_globals(TOY_GLOBALS):  # allowlisted classes: loads with weights_only=True
        result = search(algorithm="best_of_n", reward="brightness", labels=[0, 4], backend="edm", model=str(net_file),
                        steps=5, N=2)
    assert result.images.shape == (2, 3, 8, 8) and result.evaluator_rewards is None
    with pytest.raises(NoiseSearchError, match="label 5 is outside 0-4"), torch.serialization.safe_globals(TOY_GLOBALS):
        search(algorithm="naive", reward="brightness", labels=[5], backend="edm", model=str(net_file), steps=3)
