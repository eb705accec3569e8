"""Supervised verifiers of class-conditional ImageNet models (Ma et al., arXiv 2501.09732, §3.1 and Appendix A):
`dino_linear` (DINOv2's linear classifier) and `clip_zeroshot` (CLIP's prompt-engineered zero-shot classifier).
Both score an image by the logit of its conditioning class (Ma et al. "select the highest logits"); conditions
are class indices. Weights load from local paths only.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from torch.nn import functional as F

from noisesearch.errors import NoiseSearchError
from noisesearch.metrics.transformer_features import DINO_SIZE, DinoFeatures
from noisesearch.models.labels import check_labels
from noisesearch.rewards.clip import DEFAULT_CLIP, ClipImageEncoder, load_head
from noisesearch.rewards.registry import register_reward

CLASSES_PER_CALL = 8  # classes whose prompts the text encoder embeds in one call


def zeroshot_path() -> Path:
    """The packaged ImageNet class names and templates (see its "source")."""
    return Path(str(resources.files("noisesearch") / "rewards" / "assets" / "imagenet_zeroshot.json"))


def load_zeroshot(path: str | Path | None = None) -> tuple[list[str], list[str]]:
    """Class names and prompt templates (each with one "{}" for the name) from a JSON file {"classes": [...],
    "templates": [...]}: the user's, or by default the packaged ImageNet ones (1,000 classes, 80 templates)."""
    path = Path(path) if path else zeroshot_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise NoiseSearchError(f"clip_zeroshot: cannot read the classes file {path} ({err.__class__.__name__}): give "
                               'a JSON file {"classes": [names], "templates": ["a photo of a {}.", ...]}') from None
    classes = data.get("classes") if isinstance(data, dict) else None
    templates = data.get("templates") if isinstance(data, dict) else None
    for what, values in (("classes", classes), ("templates", templates)):
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise NoiseSearchError(f"clip_zeroshot: {path} needs \"{what}\", a non-empty list of strings")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise NoiseSearchError(f"clip_zeroshot: every template needs one {{}} for the class name, got '{bad[0]}'")
    return classes, templates


@register_reward("clip_zeroshot")
class ClipZeroShot:
    """CLIP zero-shot logit of the conditioning class (Radford et al.'s 80 ImageNet prompt templates, averaged).

    Each class's embedding is the normalised mean of the normalised text embeddings of its prompts (every
    template filled with its name); the score is logit_scale × the cosine between the image's embedding and
    its class's. `classes` is a JSON file of class names and templates (default: the packaged ImageNet ones).
    """

    name = "clip_zeroshot"

    def __init__(self, model: str = DEFAULT_CLIP, classes: str | None = None, device: str = "cpu") -> None:
        names, templates = load_zeroshot(classes)
        self.encoder = ClipImageEncoder(model, device)
        self.scale = float(self.encoder.clip.logit_scale.exp())
        chunks = []
        for start in range(0, len(names), CLASSES_PER_CALL):
            part = names[start:start + CLASSES_PER_CALL]
            texts = self.encoder.embed_texts([t.format(c) for c in part for t in templates])
            chunks.append(F.normalize(texts.reshape(len(part), len(templates), -1).mean(1), dim=-1))
        self.classes = torch.cat(chunks)  # (K, d)

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        labels = check_labels(cond, self.classes.shape[0])
        return self.scale * (self.encoder.embed_images(images) * self.classes[labels]).sum(-1)


@register_reward("dino_linear")
class DinoLinear:
    """DINOv2 linear-classifier logit of the conditioning class (Meta's linear4 head, as Ma et al. App. A use).

    The head is a linear layer on the class tokens of the last four layers (each after the final layernorm)
    concatenated with the mean patch token of the last: `head` is dinov2_vit{s,b,l,g}14_linear4_head.pth (a
    state dict with weight (K, 5·d) and bias (K,)), `model` the matching Dinov2Model directory (width d).
    """

    name = "dino_linear"

    def __init__(self, model: str = "", head: str = "", size: int = DINO_SIZE, device: str = "cpu") -> None:
        state = load_head(head, "dino_linear", "DINOv2's linear4 head (dinov2_vit{s,b,l,g}14_linear4_head.pth)")
        if not isinstance(state.get("weight"), torch.Tensor) or not isinstance(state.get("bias"), torch.Tensor):
            raise NoiseSearchError(f"dino_linear: {head} needs the keys weight and bias of the linear4 head, got "
                                   f"{', '.join(sorted(map(str, state))) or 'none'}")
        if not model:
            raise NoiseSearchError("dino_linear needs model=PATH to the Dinov2Model directory its head was trained on")
        self.dino = DinoFeatures(model, size, device)
        self.weight, self.bias = state["weight"].float(), state["bias"].float()
        width = 5 * self.dino.dim
        if self.weight.dim() != 2 or self.weight.shape[1] != width or self.bias.shape != self.weight.shape[:1]:
            raise NoiseSearchError(f"dino_linear: the head's weight {tuple(self.weight.shape)} and bias "
                                   f"{tuple(self.bias.shape)} do not fit a DINOv2 of width {self.dino.dim}: it takes "
                                   f"(K, {width}) and (K,), the linear4 head of the same model size")

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K) class logits."""
        layers = self.dino.last_layers(images, 4)
        tokens = [h[:, 0] for h in layers] + [layers[-1][:, 1:].mean(dim=1)]
        return F.linear(torch.cat(tokens, dim=1), self.weight, self.bias)

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        labels = check_labels(cond, self.weight.shape[0])
        return self.logits(images).gather(1, labels[:, None]).squeeze(1)
