"""Train the two digit classifiers on disjoint halves of MNIST t10k.

The verifier (the reward used during search) trains on images 0-4999 and the evaluator (used only
to score final samples) on images 5000-9999; each is tested on the other half. Writes
verifier.safetensors, evaluator.safetensors and classifiers.json into the package assets.

    python training/train_classifiers.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from mnist_data import DEFAULT_DIR, load_mnist
from safetensors.torch import save_file
from torch.nn import functional as F

from noisesearch.models.classifier import DigitClassifier

ASSETS = Path(__file__).resolve().parents[1] / "src" / "noisesearch" / "models" / "assets"
SPLITS = {"verifier": (0, 5000), "evaluator": (5000, 10000)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DIR)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ASSETS)
    return p.parse_args()


def random_shift(x: torch.Tensor, gen: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Translate each image by up to max_shift pixels (padding with background -1)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, b), generator=gen)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


@torch.no_grad()
def accuracy(model: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return (pred == y).float().mean().item()


def train_one(name: str, images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace) -> dict:
    lo, hi = SPLITS[name]
    train_mask = torch.zeros(len(images), dtype=torch.bool)
    train_mask[lo:hi] = True
    x_tr, y_tr, x_te, y_te = images[train_mask], labels[train_mask], images[~train_mask], labels[~train_mask]
    torch.manual_seed(args.seed)
    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = len(x_tr) // args.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            loss = F.cross_entropy(model(random_shift(x_tr[idx], gen)), y_tr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 5 == 0:
            print(f"{name} epoch {epoch + 1}: held-out accuracy {accuracy(model, x_te, y_te):.4f}", flush=True)
    acc = accuracy(model, x_te, y_te)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out / f"{name}.safetensors")
    return {"train_images": f"{lo}-{hi - 1}", "heldout_accuracy": round(acc, 4),
            "train_seconds": round(time.time() - start, 1)}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    images, labels, md5s = load_mnist(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    card = {
        "architecture": "DigitClassifier(width=32)",
        "command": "python training/train_classifiers.py " + " ".join(sys.argv[1:]),
        "epochs": args.epochs, "seed": args.seed, "data_md5": md5s,
    }
    for name in SPLITS:
        card[name] = train_one(name, images, labels, args)
        print(f"{name}: {card[name]}", flush=True)
    (args.out / "classifiers.json").write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
