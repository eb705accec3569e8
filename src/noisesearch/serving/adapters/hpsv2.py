"""HPSv2 / HPSv2.1 (Wu et al. 2023): an open_clip ViT-H-14 fine-tuned on human preferences, scored as the cosine of
each image and its prompt. Built with open-clip-torch rather than the `hpsv2` wheel, whose vendored open_clip lacks
its tokenizer vocabulary (HPSv2 issue #30) and whose metadata pins pytest==7.2.0 and protobuf<4; the checkpoint is
the same architecture's state dict."""

from __future__ import annotations

import torch

from .common import Score, to_pil

PACKAGE = "open-clip-torch"
IMPORTS = ("open_clip",)
WEIGHTS = {"checkpoint": "HPS_v2_compressed.pt or HPS_v2.1_compressed.pt (xswu/HPSv2)"}
ARCHITECTURE = "ViT-H-14"


def load(weights: dict[str, str], device: str) -> Score:
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(ARCHITECTURE, pretrained=None, device=device)
    checkpoint = torch.load(weights["checkpoint"], map_location="cpu")
    model.load_state_dict(checkpoint.get("state_dict", checkpoint))
    model.eval()
    tokenizer = open_clip.get_tokenizer(ARCHITECTURE)

    def score(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        pixels = torch.stack([preprocess(image) for image in to_pil(images)]).to(device)
        image_features = model.encode_image(pixels, normalize=True)
        text_features = model.encode_text(tokenizer(prompts).to(device), normalize=True)
        return (image_features * text_features).sum(-1)  # HPSv2's score: the diagonal of image @ text.T

    return score
