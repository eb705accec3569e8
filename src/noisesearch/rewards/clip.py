"""Text-to-image verifiers on CLIP (transformers): CLIP score and the LAION aesthetic predictor.

Models load from a local directory or a hub id already in the local cache; nothing is downloaded.
Image embeddings are the `clip` feature extractor's (noisesearch.metrics.transformer_features: images in
[-1, 1] resized to CLIP's input size, normalised with CLIP's statistics, in torch, batched), normalised here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from noisesearch.assets import first_line
from noisesearch.errors import NoiseSearchError
from noisesearch.metrics.transformer_features import ClipFeatures, load_pretrained, projected, transformers_class
from noisesearch.rewards.registry import register_reward

DEFAULT_CLIP = "openai/clip-vit-large-patch14"


class ClipImageEncoder:
    """Normalised CLIP embeddings of images in [-1, 1] (the `clip` feature extractor's) and of texts."""

    def __init__(self, model: str | Path, device: str = "cpu") -> None:
        self.image = ClipFeatures(model, device)
        self.clip = self.image.clip
        self.device = device
        tokenizer = transformers_class("CLIPTokenizer", "CLIP rewards")
        self.tokenizer = load_pretrained(tokenizer.from_pretrained, model, "CLIP tokenizer")

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image.features(images), dim=-1)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt").to(self.device)
        return F.normalize(projected(self.clip.get_text_features(**tok)).float().cpu(), dim=-1)


def load_head(head: str | Path, reward: str, what: str) -> dict[str, torch.Tensor]:
    """The state dict of a verifier's head from a local .pth or .safetensors file; a one-line error where the
    file is missing or unreadable (checked before the network it sits on loads)."""
    head = str(head)
    if not head or not Path(head).is_file():
        raise NoiseSearchError(f"{reward} needs head=PATH to {what}, got '{head}'")
    try:
        state = load_file(head) if head.endswith(".safetensors") else torch.load(head, map_location="cpu",
                                                                                 weights_only=True)
    except Exception as err:  # torch and safetensors raise several types for a damaged file
        raise NoiseSearchError(f"{reward}: {head} is no readable state dict ({first_line(err)})") from None
    if not isinstance(state, dict):
        raise NoiseSearchError(f"{reward}: {head} holds a {type(state).__name__}, not a state dict")
    return state


@register_reward("clip")
class ClipScore:
    """CLIP score: cosine similarity in [-1, 1] of the CLIP embeddings of the image and of its prompt."""

    name = "clip"

    def __init__(self, prompts: Sequence[str] = (), model: str = DEFAULT_CLIP, device: str = "cpu") -> None:
        if not prompts:
            raise NoiseSearchError("the clip reward needs the prompts of the conditions")
        self.encoder = ClipImageEncoder(model, device)
        self.text = self.encoder.embed_texts(prompts)

    def add_prompts(self, prompts: Sequence[str]) -> None:
        """Append prompts to those `cond` indexes, embedding only them (the verifier service learns prompts from
        its requests without reloading the model)."""
        self.text = torch.cat([self.text, self.encoder.embed_texts(prompts)])

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return (self.encoder.embed_images(images) * self.text[cond.long()]).sum(-1)


@register_reward("aesthetic")
class Aesthetic:
    """LAION aesthetic predictor: its linear head (sac+logos+ava1-l14-linearMSE) on normalised CLIP image
    embeddings; `head` is a local .pth or .safetensors state dict with layers.K.weight/bias keys."""

    name = "aesthetic"

    def __init__(self, head: str = "", model: str = DEFAULT_CLIP, device: str = "cpu",
                 prompts: Sequence[str] = ()) -> None:
        state = load_head(head, "aesthetic", "the LAION predictor's weights")
        self.encoder = ClipImageEncoder(model, device)
        index = sorted({int(k.split(".")[1]) for k in state if k.endswith(".weight")})
        self.layers = [(state[f"layers.{i}.weight"].float(), state[f"layers.{i}.bias"].float()) for i in index]

    def add_prompts(self, prompts: Sequence[str]) -> None:
        """Nothing to do: the aesthetic score does not read the prompt (it takes prompts as text rewards do)."""

    def __call__(self, images: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encoder.embed_images(images)
        for weight, bias in self.layers:
            h = F.linear(h, weight, bias)
        return h[:, 0]
