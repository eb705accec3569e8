"""HPSv3 (Ma et al. 2025; hpsv3 1.0.0): a Qwen2-VL-7B reward model; the score is the mean of the (mu, sigma) it
predicts for each image and prompt. Its shipped config names the base model by hub id; the adapter writes a copy
naming the local directory instead."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .common import Score, to_pil

PACKAGE = "hpsv3"
IMPORTS = ("hpsv3",)
WEIGHTS = {
    "checkpoint": "HPSv3.safetensors (MizzenAI/HPSv3)",
    "base": "Qwen2-VL-7B-Instruct model directory (Qwen/Qwen2-VL-7B-Instruct)",
}
CONFIG = "HPSv3_7B.yaml"


def load(weights: dict[str, str], device: str) -> Score:
    import hpsv3
    import yaml

    config = yaml.safe_load((Path(hpsv3.__file__).parent / "config" / CONFIG).read_text())
    config["model_name_or_path"] = weights["base"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / CONFIG
        path.write_text(yaml.safe_dump(config))
        inferencer = hpsv3.HPSv3RewardInferencer(config_path=str(path), checkpoint_path=weights["checkpoint"],
                                                 device=device)

    def score(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return inferencer.reward(to_pil(images), prompts)[:, 0]

    return score
