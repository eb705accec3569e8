"""ImageReward (Xu et al. 2023; image-reward 1.5): BLIP's ViT-L and text encoder with a reward head, scored on each
image with its prompt in one batch (the package's own `score` takes one image or one prompt at a time)."""

from __future__ import annotations

import torch

from .common import Score, to_pil

PACKAGE = "image-reward"
IMPORTS = ("ImageReward",)
WEIGHTS = {
    "checkpoint": "ImageReward.pt (THUDM/ImageReward)",
    "med_config": "med_config.json (THUDM/ImageReward)",
    "tokenizer": "bert-base-uncased tokenizer directory (google-bert/bert-base-uncased: vocab.txt, "
                 "tokenizer_config.json)",
}
PROMPT_TOKENS = 35  # ImageReward's prompt length


def load(weights: dict[str, str], device: str) -> Score:
    import ImageReward
    from ImageReward.models.BLIP import blip_pretrain
    from transformers import BertTokenizer

    def local_tokenizer() -> BertTokenizer:  # ImageReward's init_tokenizer, reading bert-base-uncased from disk
        tokenizer = BertTokenizer.from_pretrained(weights["tokenizer"])
        tokenizer.add_special_tokens({"bos_token": "[DEC]"})
        tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        tokenizer.enc_token_id = tokenizer.additional_special_tokens_ids[0]
        return tokenizer

    blip_pretrain.init_tokenizer = local_tokenizer
    model = ImageReward.load(weights["checkpoint"], device=device, med_config=weights["med_config"])

    def score(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        text = model.blip.tokenizer(prompts, padding="max_length", truncation=True, max_length=PROMPT_TOKENS,
                                    return_tensors="pt")
        pixels = torch.stack([model.preprocess(image) for image in to_pil(images)]).to(device)
        return model.score_gard(text["input_ids"].to(device), text["attention_mask"].to(device), pixels).reshape(-1)

    return score
