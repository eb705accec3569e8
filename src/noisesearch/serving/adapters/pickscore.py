"""PickScore (Kirstain et al. 2023): a CLIP ViT-H-14 fine-tuned on Pick-a-Pic preferences, scored as its logit
scale times the cosine of each image and its prompt (transformers' CLIPModel; no package of its own)."""

from __future__ import annotations

import torch

from .common import Score, to_pil

PACKAGE = "transformers"
IMPORTS = ("transformers",)
WEIGHTS = {
    "model": "PickScore_v1 model directory (yuvalkirstain/PickScore_v1: config.json, model.safetensors)",
    "processor": "CLIP-H processor directory (laion/CLIP-ViT-H-14-laion2B-s32B-b79K: preprocessor_config.json and "
                 "the tokenizer files)",
}


def features(output: object) -> torch.Tensor:
    """Projected features, unit length: transformers 4 returns the tensor, 5 an output holding it as pooler_output."""
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]
    return tensor / tensor.norm(dim=-1, keepdim=True)


def load(weights: dict[str, str], device: str) -> Score:
    from transformers import AutoModel, AutoProcessor

    processor = AutoProcessor.from_pretrained(weights["processor"])
    model = AutoModel.from_pretrained(weights["model"]).eval().to(device)

    def score(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        pixels = processor(images=to_pil(images), return_tensors="pt")["pixel_values"].to(device)
        text = processor(text=prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        image_features = features(model.get_image_features(pixel_values=pixels))
        text_features = features(model.get_text_features(input_ids=text["input_ids"].to(device),
                                                         attention_mask=text["attention_mask"].to(device)))
        return model.logit_scale.exp() * (image_features * text_features).sum(-1)

    return score
