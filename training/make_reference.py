"""Write the packaged MNIST reference features: the `mnist` extractor's 128-d features of all 10,000 MNIST t10k
images (scaled to [-1, 1] as the classifiers were trained), for MNIST-FID, KID and precision/recall.

The evaluator that computes these features was trained on images 5000-9999, which the reference includes: the
reference is the whole test split, and the floor (`benchmarks/population_floor.py`) measures its two halves.
Writes mnist_t10k.safetensors (with metadata: extractor, source, command) and mnist_t10k.json (the file's md5,
the command, n, d and the data's md5) into the package's metrics assets.

    python training/make_reference.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from mnist_data import DEFAULT_DIR, load_mnist

from noisesearch.metrics import get_extractor
from noisesearch.metrics.population import extract
from noisesearch.metrics.reference import references_dir, save_reference

NAME = "mnist_t10k"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DIR)
    p.add_argument("--out", type=Path, default=references_dir())
    args = p.parse_args()
    images, _, md5s = load_mnist(args.data)  # checks the files' md5 first
    extractor = get_extractor("mnist")
    features, _ = extract(extractor, images, logits=False)
    command = " ".join(["python training/make_reference.py", *sys.argv[1:]])
    data_md5 = md5s["t10k-images-idx3-ubyte.gz"]
    path = args.out / f"{NAME}.safetensors"
    args.out.mkdir(parents=True, exist_ok=True)
    save_reference(path, features, extractor.name, source=f"MNIST t10k images 0-9999 (md5 {data_md5})",
                   command=command)
    card = {"file": path.name, "md5": hashlib.md5(path.read_bytes()).hexdigest(), "command": command,
            "extractor": extractor.name, "n": features.shape[0], "d": features.shape[1], "data_md5": data_md5}
    (args.out / f"{NAME}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card), f"mean norm {features.norm(dim=1).mean():.3f}", sep="\n")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
