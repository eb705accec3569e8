"""Population metrics (MNIST-FID, KID, IS, precision, recall) of naive samples of each embedded model against the
packaged mnist_t10k reference, and two floors: the reference's two halves (t10k images 0-4999 against 5000-9999)
against each other, and --n random t10k images (the samples' n) against the other 10,000 − n.

Samples: --n images (default 1,000, 100 per class in an order shuffled by --seed), naive search with each
backend's default sampler and 18 steps, sample seeds 2^40 + i (above every sample and bench seed the shipped
presets use, below calibration's). Features are the held-out evaluator's ("MNIST-FID", not Inception's); it was
trained on t10k images 5000-9999, so the halves differ also by what it has seen. Prints one table row each.

    OMP_NUM_THREADS=1 python benchmarks/population_floor.py [--n 1000] [--seed 101]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import noisesearch as ns
from noisesearch.metrics import METRICS, get_extractor, population_metrics
from noisesearch.metrics.population import extract
from noisesearch.metrics.reference import Reference, load_reference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from mnist_data import load_mnist  # noqa: E402

SEED_BASE = 2**40
COLUMNS = ("fid", "kid_mean", "is_mean", "precision", "recall")


def row(name: str, n: int, values: dict[str, float], seconds: float) -> str:
    kid = f"{values['kid_mean']:.4f} ± {values['kid_std']:.4f}"
    return (f"| {name} | {n:,} | {values['fid']:.3f} | {kid} | {values['is_mean']:.3f} ± {values['is_std']:.3f} | "
            f"{values['precision']:.3f} | {values['recall']:.3f} | {seconds:.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="samples per model (a multiple of 10)")
    p.add_argument("--seed", type=int, default=101, help="shuffles the label order")
    p.add_argument("--max-batch", type=int, default=64)
    args = p.parse_args()
    order = torch.randperm(args.n, generator=torch.Generator().manual_seed(args.seed))
    labels = (torch.arange(args.n) % 10)[order].tolist()
    print(f"{args.n} naive samples per model ({args.n // 10} per class, label order from seed {args.seed}, sample "
          f"seeds 2^40 + i) against mnist_t10k; features: the held-out evaluator's (MNIST-FID)")
    print("| set | n | MNIST-FID ↓ | MNIST-KID ↓ | MNIST-IS ↑ | precision ↑ | recall ↑ | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for backend in ("embedded", "embedded_flow"):
        start = time.perf_counter()
        result = ns.search(algorithm="naive", reward="brightness", evaluator=None, backend=backend, labels=labels,
                           seeds=ns.sample_seeds(SEED_BASE, args.n), max_batch=args.max_batch, metrics=METRICS)
        print(row(f"naive {backend} ({result.nfe_per_image:.0f} NFE)", args.n, result.metrics,
                  time.perf_counter() - start), flush=True)
    start = time.perf_counter()
    images, _, _ = load_mnist()
    features, logits = extract(get_extractor("mnist"), images[:5000])
    second = Reference("t10k 5000-9999", "mnist", load_reference("mnist_t10k").features[5000:])
    floor = population_metrics(features, logits, second, METRICS)
    print(row("floor: t10k 0-4999 vs 5000-9999", 5000, floor, time.perf_counter() - start))
    start = time.perf_counter()
    held = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    features, logits = extract(get_extractor("mnist"), images[held[:args.n]])
    rest = Reference("the other t10k images", "mnist", load_reference("mnist_t10k").features[held[args.n:]])
    floor = population_metrics(features, logits, rest, METRICS)
    print(row(f"floor at n: {args.n:,} t10k images vs the other {len(images) - args.n:,}", args.n, floor,
              time.perf_counter() - start))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
