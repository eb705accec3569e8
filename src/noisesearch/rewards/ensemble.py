"""Ensembles of verifiers (Ma et al.): the average of member rewards, rank-normalised against a reference."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.rewards.registry import make_reward, register_reward


def parse_mapping(value: dict | str, what: str) -> dict:
    """A dict given as itself, as JSON text, or as a path to a JSON file."""
    if isinstance(value, dict):
        return value
    text = Path(value).read_text() if Path(value).suffix == ".json" and Path(value).is_file() else value
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        raise NoiseSearchError(f"{what} must be a JSON object or a .json file, got '{value}'") from None
    if not isinstance(parsed, dict):
        raise NoiseSearchError(f"{what} must be a JSON object, got '{value}'")
    return parsed


@register_reward("ensemble")
class Ensemble:
    """Mean over member rewards of each one's rank among reference scores (its empirical CDF, in [0, 1]);
    without a reference, the plain mean of the member scores."""

    name = "ensemble"

    def __init__(self, members: dict[str, dict[str, Any]] | str = "", reference: dict[str, list[float]] | str = "",
                 prompts: Sequence[str] = (), device: str = "cpu") -> None:
        spec = parse_mapping(members, "members") if members else {}
        if len(spec) < 2:
            raise NoiseSearchError("an ensemble needs two or more members, e.g. "
                                   'members=\'{"clip": {}, "aesthetic": {"head": "h.pth"}}\'')
        self.members = {name: make_reward(name, prompts or None, device, **(kwargs or {}))
                        for name, kwargs in spec.items()}
        ref = parse_mapping(reference, "reference") if reference else {}
        missing = sorted(set(ref) ^ set(self.members)) if ref else []
        if missing:
            raise NoiseSearchError(f"the reference must list scores for exactly the members; mismatch: {missing}")
        self.reference = {k: torch.tensor(sorted(v), dtype=torch.float64) for k, v in ref.items()}

    def add_prompts(self, prompts: Sequence[str]) -> None:
        """Append prompts to those `cond` indexes, in each member that reads prompts (see ClipScore.add_prompts)."""
        for member in self.members.values():
            if hasattr(member, "add_prompts"):
                member.add_prompts(prompts)

    def __call__(self, images: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        parts = []
        for name, member in self.members.items():
            scores = member(images, cond).double()
            if self.reference:
                ref = self.reference[name]
                scores = torch.searchsorted(ref, scores, right=True).double() / len(ref)
            parts.append(scores)
        return torch.stack(parts).mean(0).float()
