"""VQAScore (Lin et al. 2024; t2v-metrics 3.0): P("Yes") of CLIP-FlanT5-XXL asked whether each image shows its
prompt. t2v-metrics reads images from files, so the adapter writes each batch as PNGs to a temporary folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .common import Score, to_pil

PACKAGE = "t2v-metrics"
IMPORTS = ("t2v_metrics",)
WEIGHTS = {
    "cache": "Hugging Face cache directory holding zhiqiulin/clip-flant5-xxl, google/flan-t5-xxl (its tokenizer) "
             "and openai/clip-vit-large-patch14-336",
}
MODEL = "clip-flant5-xxl"


def load(weights: dict[str, str], device: str) -> Score:
    import t2v_metrics

    scorer = t2v_metrics.VQAScore(model=MODEL, device=device, cache_dir=weights["cache"])

    def score(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        with tempfile.TemporaryDirectory() as folder:
            paths = []
            for i, image in enumerate(to_pil(images)):
                paths.append(str(Path(folder) / f"{i}.png"))
                image.save(paths[-1])
            return scorer.model.forward(paths, prompts).reshape(-1)

    return score
