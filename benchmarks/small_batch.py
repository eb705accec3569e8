"""Search overhead at the batch sizes users run: wall time per NFE through `search()` over the bare network's
time for the same calls, side by side in one run.

For every algorithm, with one label and with 16 labels (packaged embedded model, brightness reward, default
mode: calls carry real rows only, at most --max-batch):
  1. an untimed run records the rows of every network call the search makes (the same in every run: the
     search is deterministic);
  2. timed, alternating: the search through `noisesearch.search()` (model loaded once and passed in, no
     evaluator), and a bare replay that calls the network directly with random inputs of exactly those
     call sizes, in the same order, under torch.no_grad;
  3. printed: NFE, calls, mean rows per call, µs per NFE of each, their ratio (median over --reps), and the
     padded rows as a share of the real rows.
Targets (issue "Speed where users run it"): ratio ≤ 1.15 at one label, ≤ 1.10 at 16 labels, mcts ≤ 1.3; padding
≤ 5 % in the default mode (it is 0 by construction; --batch-invariant shows what that mode pays).

    python benchmarks/small_batch.py [--reps 3] [--max-batch 16] [--batch-invariant] [--only eps_greedy,mcts]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import noisesearch
from noisesearch import load_model
from noisesearch.api import plan_search
from noisesearch.testing import CallRecorder

ALGORITHMS = {
    "naive": {},
    "best_of_n (4)": {"algorithm": "best_of_n", "N": 4},
    "beam (4, 2)": {"algorithm": "beam", "N": 4, "B": 2},
    "mcts (4, 8)": {"algorithm": "mcts", "N": 4, "S": 8},
    "zero_order (4, 20)": {"algorithm": "zero_order", "N": 4, "K": 20},
    "eps_greedy (4, 20)": {"algorithm": "eps_greedy", "N": 4, "K": 20},
    "paths": {"algorithm": "paths"},
}


def bare_replay(net, rows: list[int]) -> None:
    """The network called directly once per recorded call, with inputs of its size."""
    inputs = {b: (torch.randn(b, 1, 28, 28), torch.full((b,), 1.5), torch.arange(b) % 10) for b in set(rows)}
    with torch.no_grad():
        for b in rows:
            net(*inputs[b])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--batch-invariant", action="store_true", help="run the searches in batch-invariant mode")
    p.add_argument("--labels", default="1,16", help="label counts to run (default 1,16)")
    p.add_argument("--only", default=None, help="comma-separated algorithm names (default: all)")
    p.add_argument("--steps", type=int, default=18)
    args = p.parse_args()
    denoiser = load_model()
    names = [n for n in ALGORITHMS if args.only is None or n.split()[0] in args.only.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, max_batch {args.max_batch}, "
          f"{'batch-invariant' if args.batch_invariant else 'default'} mode, {args.steps} steps, median of "
          f"{args.reps}")
    print(f"{'algorithm':20s} {'labels':>6s} {'NFE':>7s} {'calls':>6s} {'rows/call':>9s} {'search us/NFE':>13s} "
          f"{'bare us/NFE':>11s} {'ratio':>6s} {'padded':>7s}")
    for count in (int(v) for v in args.labels.split(",")):
        labels = [(3 + 7 * k) % 10 for k in range(count)]
        for name in names:
            kw = {**ALGORITHMS[name], "reward": "brightness", "labels": labels, "seed": 0, "evaluator": None,
                  "max_batch": args.max_batch, "batch_invariant": args.batch_invariant, "steps": args.steps}
            recorder = CallRecorder(denoiser)
            planned = plan_search(**kw, denoiser=recorder)
            result = planned.run()
            nfe = int(result.nfe.sum())
            padded = sum(recorder.rows) / nfe - 1  # network rows beyond the real ones (1 NFE per row here)
            searches, bares = [], []
            for _ in range(args.reps):
                searches.append(timed(lambda kw=kw: noisesearch.search(**kw, denoiser=denoiser)))
                bares.append(timed(lambda rows=recorder.rows: bare_replay(denoiser.model, rows)))
            t_search, t_bare = statistics.median(searches), statistics.median(bares)
            calls = len(recorder.rows)
            print(f"{name:20s} {count:6d} {nfe:7d} {calls:6d} {sum(recorder.rows) / calls:9.1f} "
                  f"{t_search * 1e6 / nfe:13.1f} {t_bare * 1e6 / nfe:11.1f} {t_search / t_bare:6.3f} "
                  f"{padded:7.1%}", flush=True)


if __name__ == "__main__":
    main()
