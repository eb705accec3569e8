"""Consent for model files that run code when loaded (pickles, full-module torch files): trust_model_code."""

import pickle

import pytest
import torch
from edm_toy_net import ToyEDMPrecond

from noisesearch import NoiseSearchError
from noisesearch.backends import LoadRequest, load_backend_denoiser
from noisesearch.backends.edm_network import load_edm_network

TOY_GLOBALS = [ToyEDMPrecond, torch.nn.Conv2d, torch.nn.Linear]  # what a weights_only load of the toy net needs


class Evil:
    """Unpickling this runs `open(marker, 'w').write('x')`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('x')",)


def assert_refused(path, *fragments):
    with pytest.raises(NoiseSearchError) as info:
        load_edm_network(path)
    message = str(info.value)
    assert "\n" not in message and "arbitrary code" in message and "--trust-model-code" in message
    assert "trust_model_code=True" in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize("suffix", [".pkl", ".pickle"])
def test_a_malicious_pickle_is_refused_before_it_is_unpickled(tmp_path, suffix):
    marker = tmp_path / "marker"
    path = tmp_path / f"evil{suffix}"
    path.write_bytes(pickle.dumps(Evil(marker)))
    assert_refused(path, "is a pickle")
    assert not marker.exists()


def test_a_malicious_torch_file_is_refused_without_consent_and_runs_with_it(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    torch.save(Evil(marker), path)
    assert_refused(path, "needs code to load", "exec")
    assert not marker.exists()
    with pytest.raises(NoiseSearchError, match="holds no network module"):  # consent is what lets it run
        load_edm_network(path, trust_model_code=True)
    assert marker.read_text() == "x"


def test_a_full_module_needs_consent_and_loads_with_it(tmp_path):
    torch.manual_seed(0)
    net = ToyEDMPrecond()
    pt, pkl = tmp_path / "net.pt", tmp_path / "net.pkl"
    torch.save({"ema": net}, pt)
    pkl.write_bytes(pickle.dumps({"ema": net}))
    assert_refused(pt, "needs code to load", "ToyEDMPrecond")
    assert_refused(pkl, "is a pickle")
    x, sigma, labels = torch.randn(2, 3, 8, 8), torch.tensor([0.5, 3.0]), torch.tensor([1, 4])
    for path in (pt, pkl):
        denoiser = load_edm_network(path, trust_model_code=True)
        assert denoiser.image_shape == (3, 8, 8)
        assert torch.equal(denoiser(x, sigma, labels), net(x, sigma, torch.nn.functional.one_hot(labels, 5).float()))


def test_a_file_that_weights_only_loading_reads_needs_no_consent(tmp_path):
    path = tmp_path / "net.pt"
    torch.save({"ema": ToyEDMPrecond()}, path)
    with torch.serialization.safe_globals(TOY_GLOBALS):
        assert load_edm_network(path).image_shape == (3, 8, 8)
    state = tmp_path / "state.pt"
    torch.save(ToyEDMPrecond().state_dict(), state)
    with pytest.raises(NoiseSearchError, match="holds no network module.*state dict alone"):
        load_edm_network(state)


def test_a_file_that_is_no_torch_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a torch file")
    assert_refused(path, "weights_only=True")  # what the safe loader cannot read may need code: consent first
    with pytest.raises(NoiseSearchError, match="cannot read") as info:
        load_edm_network(path, trust_model_code=True)
    assert "\n" not in str(info.value)


def test_the_edm_backend_passes_trust_model_code_through(tmp_path):
    assert LoadRequest(None, 1.0, None, "cpu", torch.float32).trust_model_code is False
    path = tmp_path / "net.pt"
    torch.save({"ema": ToyEDMPrecond()}, path)
    with pytest.raises(NoiseSearchError, match="--trust-model-code"):
        load_backend_denoiser("edm", str(path))
    assert load_backend_denoiser("edm", str(path), trust_model_code=True).image_shape == (3, 8, 8)
