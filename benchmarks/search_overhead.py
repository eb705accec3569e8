"""Wall time per metered NFE of eps_greedy vs naive, measured side by side in one run.

Search bookkeeping (candidate draws, reward calls, incumbent updates) must not dominate the network:
the ratio of seconds per NFE should stay at or below 1.25. Runs alternate naive, eps_greedy, ... and
medians are reported.

    python benchmarks/search_overhead.py [--labels 16] [--K 5] [--reward classifier] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics

import noisesearch as ns


def seconds_per_nfe(algorithm: str, labels: list[int], reward: str, denoiser, **params) -> float:
    result = ns.search(algorithm=algorithm, reward=reward, labels=labels, seed=0, denoiser=denoiser, evaluator=None,
                       **params)
    return result.wall_time / float(result.nfe.sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--labels", type=int, default=16, help="number of conditions searched together")
    p.add_argument("--N", type=int, default=4)
    p.add_argument("--K", type=int, default=5)
    p.add_argument("--reward", default="classifier")
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    denoiser = ns.load_model()
    labels = [k % 10 for k in range(args.labels)]
    naive, eps = [], []
    for _ in range(args.reps):
        naive.append(seconds_per_nfe("naive", labels, args.reward, denoiser))
        eps.append(seconds_per_nfe("eps_greedy", labels, args.reward, denoiser, N=args.N, K=args.K))
    t_naive, t_eps = statistics.median(naive), statistics.median(eps)
    print(f"{args.labels} conditions, reward {args.reward}: naive {t_naive * 1e3:.3f} ms/NFE, "
          f"eps_greedy (N={args.N}, K={args.K}) {t_eps * 1e3:.3f} ms/NFE, ratio {t_eps / t_naive:.3f}")


if __name__ == "__main__":
    main()
