"""Measure an embedded model's quality and record it in its model card.

Draws 100 naive samples per class (seeds 0-999, the backend's default sampler: EDM's Heun schedule for
the diffusion model, flow_euler for the flow model), labels them with the held-out evaluator and the
verifier, writes the figures into <model>.json and a 10x10 grid (one row per class) to
docs/mnist_samples.png (the flow model: docs/mnist_flow_samples.png).

    python training/evaluate_model.py                  # the EDM model
    python training/evaluate_model.py --model flow     # the rectified-flow model
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from noisesearch import load_model, search
from noisesearch.assets import assets_dir
from noisesearch.imaging import make_grid
from noisesearch.rewards.classifier import ClassifierProbability

ROOT = Path(__file__).resolve().parents[1]


def predict(name: str, images: torch.Tensor) -> torch.Tensor:
    """Labels that the shipped classifier `name` (verifier or evaluator) gives to images."""
    with torch.no_grad():
        return ClassifierProbability(name).model(images).argmax(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("diffusion", "flow"), default="diffusion")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--grid", type=Path, default=None)
    args = p.parse_args()
    backend = {"diffusion": "embedded", "flow": "embedded_flow"}[args.model]
    grid = args.grid or ROOT / "docs" / {"diffusion": "mnist_samples.png", "flow": "mnist_flow_samples.png"}[args.model]
    labels = torch.arange(10).repeat_interleave(args.per_class)
    start = time.perf_counter()
    result = search(algorithm="naive", reward="classifier", labels=labels.tolist(), seed=0, backend=backend,
                    denoiser=load_model(1.0, kind=args.model), progress=True)
    seconds = time.perf_counter() - start
    sampler = result.config["sampler"]
    nfe = int(result.nfe[0])
    quality = {"samples": len(labels), "seeds": "0-999",
               "sampler": f"naive, the default {sampler['schedule']} schedule with {sampler['solver']} steps "
                          f"({sampler['steps']} steps, {nfe} NFE)", "nfe_per_image": nfe}
    for name in ["evaluator", "verifier"]:
        agree = (predict(name, result.images) == labels).float().mean().item()
        quality[f"{name}_agreement"] = round(agree, 4)
    quality["mean_evaluator_probability"] = round(result.evaluator_rewards.mean().item(), 4)
    quality["mean_verifier_probability"] = round(result.rewards.mean().item(), 4)
    quality["sampling_seconds"] = round(seconds, 1)
    card_path = assets_dir() / f"{args.model}.json"
    card = json.loads(card_path.read_text())
    card["quality"] = quality
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(quality, indent=2))
    k = min(10, args.per_class)
    rows = torch.stack([result.images[c * args.per_class:c * args.per_class + k] for c in range(10)])
    grid.parent.mkdir(parents=True, exist_ok=True)
    make_grid(rows.flatten(0, 1), ncol=k, scale=3).save(grid)
    print(f"wrote {grid}")


if __name__ == "__main__":
    main()
