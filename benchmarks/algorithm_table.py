"""Mean reward of search algorithms on the embedded model at their NFE, for labels drawn from a seed.

The issue's check: on 36 labels drawn from seed 0 with the classifier reward, eps_greedy (4, 20) >
zero_order (4, 20) > best_of_n (4) > naive. Prints one row per algorithm: mean ± std of the search
reward, the held-out evaluator's mean, NFE per image and wall time.

    python benchmarks/algorithm_table.py [--labels 36] [--seed 0] [--reward classifier] [--guidance 1]
"""

from __future__ import annotations

import argparse

import noisesearch as ns

DEFAULT_RUNS = [
    ("naive", {}),
    ("best_of_n", {"N": 4}),
    ("zero_order", {"N": 4, "K": 20}),
    ("eps_greedy", {"N": 4, "K": 20, "lambda_": 0.15, "eps": 0.4}),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", type=int, default=36)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reward", default="classifier")
    p.add_argument("--guidance", type=float, default=1.0)
    args = p.parse_args()
    labels = ns.draw_labels(args.labels, args.seed)
    denoiser = ns.load_model(args.guidance)
    print(f"{args.labels} labels from seed {args.seed}, reward {args.reward}, guidance {args.guidance}")
    print(f"| algorithm | params | {args.reward} mean ± std | evaluator mean | NFE / image | wall s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, params in DEFAULT_RUNS:
        r = ns.search(algorithm=name, reward=args.reward, labels=labels, seed=args.seed, denoiser=denoiser, **params)
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "-"
        print(f"| {name} | {shown} | {r.rewards.mean():.4f} ± {r.rewards.std():.4f} | "
              f"{r.evaluator_rewards.mean():.4f} | {r.nfe_per_image:.0f} | {r.wall_time:.1f} |", flush=True)


if __name__ == "__main__":
    main()
