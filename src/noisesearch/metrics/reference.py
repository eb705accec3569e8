"""Reference feature sets that generated samples are compared against (FID, KID, precision/recall, the FID
oracle). A reference is the features of real images under one registered extractor, stored in a safetensors
file with its metadata (extractor, source, the command that made it); the package ships `mnist_t10k`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import torch

from noisesearch.errors import NoiseSearchError


def references_dir() -> Path:
    """Directory of the packaged reference feature files."""
    return Path(str(resources.files("noisesearch") / "metrics" / "assets"))


@dataclass(frozen=True, eq=False)
class Reference:
    """Features (n, d) of real images under extractor `extractor`, and where they came from."""

    name: str
    extractor: str
    features: torch.Tensor
    source: str = ""

    @cached_property
    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (d,) and unbiased covariance (d, d), float64."""
        f = self.features.double()
        return f.mean(dim=0), torch.cov(f.T)


def reference_path(name: str | Path) -> Path:
    """A packaged reference's file by name (e.g. "mnist_t10k"), or the path given."""
    path = Path(name)
    return path if path.suffix == ".safetensors" else references_dir() / f"{name}.safetensors"


def load_reference(name: str | Path) -> Reference:
    """A packaged reference by name or a reference file by path; a missing or unreadable file is one line."""
    from safetensors import safe_open

    path = reference_path(name)
    if not path.exists():
        packaged = sorted(p.stem for p in references_dir().glob("*.safetensors")) if references_dir().exists() else []
        raise NoiseSearchError(f"reference features {path} not found: give a .safetensors reference file or one of "
                               f"{', '.join(packaged) or '(none packaged)'}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            features = handle.get_tensor("features")
    except Exception as err:  # safetensors raises several types for a damaged file
        raise NoiseSearchError(f"reference features {path} are not a readable safetensors file with a 'features' "
                               f"tensor ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if "extractor" not in meta:
        raise NoiseSearchError(f"reference features {path} do not say their extractor (metadata 'extractor')")
    return Reference(path.stem, meta["extractor"], features.float(), meta.get("source", ""))


def save_reference(path: Path | str, features: torch.Tensor, extractor: str, **meta: str) -> None:
    """Write a reference file: features (stored as float32) and string metadata (extractor, source, command)."""
    from safetensors.torch import save_file

    save_file({"features": features.float().contiguous()}, str(path), metadata={"extractor": extractor, **meta})
