"""Text-to-image verifiers on CLIP (transformers): CLIP score and the LAION aesthetic predictor.

Models load from a local directory or a hub id already in the local cache; nothing is downloaded.
Images in [-1, 1] are resized to CLIP's input size (bicubic) and normalised with CLIP's statistics
in torch, batched; grey images are repeated to three channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from noisesearch.errors import NoiseSearchError
from noisesearch.rewards.registry import register_reward

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_CLIP = "openai/clip-vit-large-patch14"


def load_clip(model: str | Path, device: str = "cpu"):
    """A transformers CLIPModel and its tokenizer, offline."""
    try:
        from transformers import CLIPModel, CLIPTokenizer
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise NoiseSearchError("CLIP rewards need `pip install transformers`") from None
    transformers_logging.disable_progress_bar()
    try:
        clip = CLIPModel.from_pretrained(str(model), local_files_only=True).to(device).eval()
        tokenizer = CLIPTokenizer.from_pretrained(str(model), local_files_only=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NoiseSearchError(f"cannot load CLIP model '{model}' offline ({first}): pass a local directory") from None
    return clip.requires_grad_(False), tokenizer


def features(output) -> torch.Tensor:
    """Projected features from get_image/text_features (a tensor, or an output with pooler_output)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipImageEncoder:
    """Normalised CLIP image embeddings of images in [-1, 1]."""

    def __init__(self, model: str | Path, device: str = "cpu") -> None:
        self.clip, self.tokenizer = load_clip(model, device)
        self.device = device
        self.size = self.clip.config.vision_config.image_size
        self.mean = torch.tensor(CLIP_MEAN).reshape(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD).reshape(1, 3, 1, 1)

    @torch.no_grad()
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float().clamp(-1, 1) + 1) / 2
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False).clamp(0, 1)
        x = ((x - self.mean) / self.std).to(self.device)
        return F.normalize(features(self.clip.get_image_features(pixel_values=x)).float().cpu(), dim=-1)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        return F.normalize(features(self.clip.get_text_features(**tok)).float().cpu(), dim=-1)


@register_reward("clip")
class ClipScore:
    """CLIP score: cosine similarity in [-1, 1] of the CLIP embeddings of the image and of its prompt."""

    name = "clip"

    def __init__(self, prompts: Sequence[str] = (), model: str = DEFAULT_CLIP, device: str = "cpu") -> None:
        if not prompts:
            raise NoiseSearchError("the clip reward needs the prompts of the conditions")
        self.encoder = ClipImageEncoder(model, device)
        self.text = self.encoder.embed_texts(prompts)

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return (self.encoder.embed_images(images) * self.text[cond.long()]).sum(-1)


@register_reward("aesthetic")
class Aesthetic:
    """LAION aesthetic predictor: its linear head (sac+logos+ava1-l14-linearMSE) on normalised CLIP image
    embeddings; `head` is a local .pth or .safetensors state dict with layers.K.weight/bias keys."""

    name = "aesthetic"

    def __init__(self, head: str = "", model: str = DEFAULT_CLIP, device: str = "cpu",
                 prompts: Sequence[str] = ()) -> None:
        head = str(head)
        if not head or not Path(head).is_file():
            raise NoiseSearchError(f"aesthetic needs head=PATH to the LAION predictor's weights, got '{head}'")
        self.encoder = ClipImageEncoder(model, device)
        if head.endswith(".safetensors"):
            state = load_file(head)
        else:
            state = torch.load(head, map_location="cpu", weights_only=True)
        index = sorted({int(k.split(".")[1]) for k in state if k.endswith(".weight")})
        self.layers = [(state[f"layers.{i}.weight"].float(), state[f"layers.{i}.bias"].float()) for i in index]

    def __call__(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder.embed_images(images)
        for weight, bias in self.layers:
            h = F.linear(h, weight, bias)
        return h[:, 0]
