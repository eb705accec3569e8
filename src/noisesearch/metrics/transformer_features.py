"""Feature extractors on transformers vision models, loaded offline from local paths: `clip` (CLIPModel image
embeddings) and `dino` (Dinov2Model: the class token of the last layer after the final layernorm).

Images in [-1, 1] become each network's input in torch, batched (`pixel_values`): grey images repeated to three
channels, resized bicubically to a square, normalised with the network's statistics. The CLIP rewards
(`noisesearch.rewards.clip`) and the DINOv2 linear classifier (`noisesearch.rewards.imagenet`) build on these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from noisesearch.assets import first_line
from noisesearch.errors import NoiseSearchError
from noisesearch.metrics.features import register_extractor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DINOv2's normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_SIZE = 224  # DINOv2's evaluation crop


def transformers_class(name: str, what: str) -> Any:
    """The transformers class `name`, imported now (transformers is optional), with its progress bars off."""
    try:
        import transformers
        from transformers.utils import logging as transformers_logging
    except ImportError:
        raise NoiseSearchError(f"{what} needs `pip install transformers`") from None
    transformers_logging.disable_progress_bar()
    return getattr(transformers, name)


def load_pretrained(load: Callable[..., Any], model: str | Path, what: str) -> Any:
    """`load(model)` offline (a local directory, or a hub id already in the local cache); a one-line error if it
    cannot be loaded."""
    try:
        return load(str(model), local_files_only=True)
    except (OSError, ValueError) as err:
        raise NoiseSearchError(f"cannot load {what} '{model}' offline ({first_line(err)}): pass a local directory"
                               ) from None


def load_model(class_name: str, model: str | Path, what: str, device: str) -> Any:
    """A transformers model of class `class_name` from `model`, offline, on `device`, in eval mode, frozen."""
    network = load_pretrained(transformers_class(class_name, what).from_pretrained, model, what)
    return network.to(device).eval().requires_grad_(False)


def pixel_values(images: torch.Tensor, size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Images in [-1, 1] (B, 1 or 3, H, W) as a vision network's input (B, 3, size, size): grey repeated to three
    channels, resized bicubically, normalised with the network's channel statistics."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise NoiseSearchError(f"vision features take images shaped (B, 1 or 3, H, W), got {tuple(images.shape)}")
    x = (images.float().clamp(-1, 1) + 1) / 2
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x - torch.tensor(mean).reshape(1, 3, 1, 1)) / torch.tensor(std).reshape(1, 3, 1, 1)


def projected(output: Any) -> torch.Tensor:
    """Projected features from CLIPModel.get_image/text_features (a tensor, or an output with pooler_output)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class NoLogits:
    """For extractors that are no classifiers: `logits` is a one-line error."""

    name: str
    has_logits = False  # checked by plan_metrics before any image is made

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        raise NoiseSearchError(f"feature extractor '{self.name}' is no classifier: it has no logits (the Inception "
                               "Score and the IS oracle need a classifier's)")


@register_extractor("clip")
class ClipFeatures(NoLogits):
    """CLIP image embeddings (the projected, unnormalised output of CLIPModel.get_image_features) of a local
    CLIPModel directory `model`."""

    name = "clip"

    def __init__(self, model: str | Path, device: str = "cpu") -> None:
        self.clip = load_model("CLIPModel", model, "CLIP model", device)
        self.device = device
        self.size = self.clip.config.vision_config.image_size
        self.dim = self.clip.config.projection_dim

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = pixel_values(images, self.size, CLIP_MEAN, CLIP_STD).to(self.device)
        return projected(self.clip.get_image_features(pixel_values=x)).float().cpu()


@register_extractor("dino")
class DinoFeatures(NoLogits):
    """DINOv2 features of a local Dinov2Model directory `model`: the class token of the last layer after the final
    layernorm; images are resized to `size` (224, DINOv2's evaluation crop; a multiple of the patch size)."""

    name = "dino"

    def __init__(self, model: str | Path, size: int = DINO_SIZE, device: str = "cpu") -> None:
        self.dino = load_model("Dinov2Model", model, "DINOv2 model", device)
        patch = self.dino.config.patch_size
        if not isinstance(size, int) or size < patch or size % patch:
            raise NoiseSearchError(f"the DINOv2 input size must be a multiple of its patch size {patch}, got {size}")
        self.size, self.device = size, device
        self.dim = self.dino.config.hidden_size

    @torch.no_grad()
    def last_layers(self, images: torch.Tensor, n: int = 1) -> list[torch.Tensor]:
        """The tokens (B, 1 + registers + patches, d) of the last `n` layers, each after the final layernorm,
        earliest first (DINOv2's get_intermediate_layers with norm=True)."""
        x = pixel_values(images, self.size, IMAGENET_MEAN, IMAGENET_STD).to(self.device)
        hidden = self.dino(pixel_values=x, output_hidden_states=True).hidden_states  # embeddings, then each layer
        return [self.dino.layernorm(h).float().cpu() for h in hidden[-n:]]

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.last_layers(images)[0][:, 0]
