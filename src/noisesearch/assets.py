"""Locate and load the weights shipped inside the package (no network, no ../shared)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file

from noisesearch.errors import NoiseSearchError


def assets_dir() -> Path:
    """Directory of the packaged safetensors weights and model cards."""
    return Path(str(resources.files("noisesearch") / "models" / "assets"))


def load_weights(name: str, directory: Path | str | None = None) -> dict[str, torch.Tensor]:
    """State dict from `<directory>/<name>.safetensors` (default: the packaged assets)."""
    path = Path(directory or assets_dir()) / f"{name}.safetensors"
    if not path.exists():
        raise NoiseSearchError(f"weights {path} not found: train them (see training/) or pass a directory holding them")
    return load_file(str(path))


def load_card(name: str, directory: Path | str | None = None) -> dict:
    """JSON model card `<directory>/<name>.json`, or {} if there is none."""
    path = Path(directory or assets_dir()) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}
