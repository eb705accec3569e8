"""Training scripts: a resumed diffusion run equals an uninterrupted one, bit for bit."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TRAINING = Path(__file__).resolve().parents[1] / "training"
sys.path.insert(0, str(TRAINING))
from mnist_data import DEFAULT_DIR  # noqa: E402


def train(tmp: Path, ckpt: str, steps: int) -> str:
    cmd = [sys.executable, str(TRAINING / "train_diffusion.py"), "--steps", str(steps), "--batch", "4",
           "--checkpoint-every", "1", "--checkpoint", str(tmp / ckpt), "--out", str(tmp / ckpt.replace(".pt", ""))]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout


@pytest.mark.skipif(not DEFAULT_DIR.exists(), reason="../shared/data/mnist is only on the project's machines")
def test_resumed_training_is_identical_to_an_uninterrupted_run(tmp_path):
    train(tmp_path, "split.pt", 2)
    assert "resumed at step 2" in train(tmp_path, "split.pt", 3)
    train(tmp_path, "whole.pt", 3)
    split = load_file(str(tmp_path / "split" / "diffusion.safetensors"))
    whole = load_file(str(tmp_path / "whole" / "diffusion.safetensors"))
    assert split.keys() == whole.keys()
    assert all(torch.equal(split[k], whole[k]) for k in split)
