"""Ma et al.'s Fig. 5 (left) on the embedded EDM model: the Spearman correlation between the self-supervised score
(ssl_mnist: the held-out evaluator's feature cosine of each image and its own x0 prediction at sigma ≈ 0.4) and the
verifier classifier's logit and probability of the label, over naive samples, with 95 % bootstrap intervals.

    OMP_NUM_THREADS=1 python benchmarks/ssl_correlation.py [--per-class 50] [--seed 202] [--sigma 0.4] [--draws 1000]
        [--backend embedded] [--steps N]

Seeds: sample i uses bench_seed(seed, 0, i) (seed 202 is used by no other committed run).
"""

from __future__ import annotations

import argparse
import json
import time

from noisesearch.drivers.ssl_correlation import ssl_correlation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=202)
    parser.add_argument("--sigma", type=float, default=0.4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--backend", default="embedded")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    out = ssl_correlation(args.per_class, args.seed, args.sigma, args.draws, backend=args.backend, steps=args.steps)
    seconds = time.perf_counter() - start
    print(f"{out['n']} naive samples ({out['per_class']} per digit, seed {out['seed']}, backend {args.backend}), "
          f"{out['nfe_per_image']:.0f} NFE each; ssl_mnist x0 at sigma_hat {out['sigma_hat']:.3f} (asked "
          f"{out['sigma']}), mean score {out['mean_ssl']:.5f}")
    for name in ("logit", "probability"):
        low, high = out[f"interval_{name}"]
        print(f"Spearman(ssl_mnist, verifier {name} of the label) = {out[f'spearman_{name}']:+.3f}  "
              f"[{low:+.3f}, {high:+.3f}] ({out['level']:.0%} bootstrap, {out['draws']} draws)")
    print(f"{seconds:.0f} s")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
