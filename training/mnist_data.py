"""Load the MNIST test split from ../shared/data/mnist (IDX format), checking md5 first."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
FILES = {
    "images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 16),
    "labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 8),
}


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def load_mnist(data_dir: Path = DEFAULT_DIR) -> tuple[torch.Tensor, torch.Tensor, dict[str, str]]:
    """Return images in [-1, 1] of shape (10000, 1, 28, 28), int64 labels, and the files' md5s."""
    arrays, md5s = {}, {}
    for key, (name, expected, header) in FILES.items():
        path = Path(data_dir) / name
        if not path.exists():
            raise SystemExit(f"MNIST file {path} not found: pass --data DIR holding {name}")
        md5s[name] = md5_of(path)
        if md5s[name] != expected:
            raise SystemExit(f"{path} has md5 {md5s[name]}, expected {expected}: the file is corrupt")
        arrays[key] = np.frombuffer(gzip.decompress(path.read_bytes()), dtype=np.uint8, offset=header)
    images = torch.from_numpy(arrays["images"].reshape(-1, 1, 28, 28).astype(np.float32)) / 127.5 - 1
    labels = torch.from_numpy(arrays["labels"].astype(np.int64))
    return images, labels, md5s
