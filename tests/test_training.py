"""Training scripts: a resumed run equals an uninterrupted one, bit for bit (EDM and flow models); the flow
model's written weights load as the embedded_flow backend."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TRAINING = Path(__file__).resolve().parents[1] / "training"
sys.path.insert(0, str(TRAINING))
from mnist_data import DEFAULT_DIR  # noqa: E402

needs_mnist = pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="../shared/data/mnist is not on this machine")


def train(tmp: Path, ckpt: str, steps: int, model: str = "diffusion") -> str:
    cmd = [sys.executable, str(TRAINING / f"train_{model}.py"), "--steps", str(steps), "--batch", "4",
           "--checkpoint-every", "1", "--checkpoint", str(tmp / ckpt), "--out", str(tmp / ckpt.replace(".pt", ""))]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout


@needs_mnist
@pytest.mark.parametrize("model", ["diffusion", "flow"])
def test_resumed_training_is_identical_to_an_uninterrupted_run(tmp_path, model):
    train(tmp_path, "split.pt", 2, model)
    assert "resumed at step 2" in train(tmp_path, "split.pt", 3, model)
    train(tmp_path, "whole.pt", 3, model)
    split = load_file(str(tmp_path / "split" / f"{model}.safetensors"))
    whole = load_file(str(tmp_path / "whole" / f"{model}.safetensors"))
    assert split.keys() == whole.keys()
    assert all(torch.equal(split[k], whole[k]) for k in split)


@needs_mnist
def test_trained_flow_weights_load_as_the_embedded_flow_backend(tmp_path):
    from noisesearch.backends import load_backend_denoiser

    train(tmp_path, "flow.pt", 2, "flow")
    denoiser = load_backend_denoiser("embedded_flow", str(tmp_path / "flow"))
    x0 = denoiser(torch.randn(2, 1, 28, 28), torch.tensor([3.0, 0.5]), torch.tensor([1, 7]))
    assert x0.shape == (2, 1, 28, 28) and bool(torch.isfinite(x0).all())
