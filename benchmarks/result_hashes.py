"""Hash search outputs (images, rewards, NFE, traces) of every algorithm and of a calibration on the embedded
model, to prove that a refactor changes no result: run it before and after on the same machine and diff the
output. Prints one line per cell: reward, cell, sha256 prefix, NFE per image.

    python benchmarks/result_hashes.py > before.txt   # ... change ...   then again > after.txt; diff

--batch-invariant runs every search in batch-invariant mode (calls padded to max_batch rows), the mode that
code from before the mode existed always ran in.
"""
import argparse
import hashlib
import json

import torch

import noisesearch
from noisesearch.adaptive import CalibrationConfig
from noisesearch.drivers import calibrate

torch.set_num_threads(1)


def digest(result) -> str:
    h = hashlib.sha256()
    for t in (result.images, result.rewards, result.nfe):
        h.update(t.contiguous().numpy().tobytes())
    if result.evaluator_rewards is not None:
        h.update(result.evaluator_rewards.numpy().tobytes())
    trace = result.trace
    if trace is not None:
        if hasattr(trace, "expanded_steps"):
            h.update(json.dumps(trace.expanded_steps).encode())
        else:
            h.update(json.dumps(trace.to_dict()).encode())
    return h.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-invariant", action="store_true")
    mode = {"batch_invariant": True} if parser.parse_args().batch_invariant else {}
    labels = [3, 8, 0]
    cells = {
        "naive": dict(algorithm="naive"),
        "best_of_n": dict(algorithm="best_of_n", N=4),
        "beam": dict(algorithm="beam", N=4, B=2),
        "mcts": dict(algorithm="mcts", N=3, S=3),
        "eps_greedy": dict(algorithm="eps_greedy", N=4, K=5),
        "eps_greedy_B2_step": dict(algorithm="eps_greedy", N=2, K=3, B=2, score_with="step"),
        "zero_order": dict(algorithm="zero_order", N=4, K=3),
        "zero_order_initial": dict(algorithm="zero_order_initial", N=2, K=2),
        "paths": dict(algorithm="paths", N=2, M=2),
        "window": dict(algorithm="eps_greedy_window", N=2, K_in=4),
        "naive_cfg2": dict(algorithm="naive", guidance=2.0),
        "eps_greedy_cfg0": dict(algorithm="eps_greedy", N=2, K=2, guidance=0.0),
    }
    for reward in ("brightness", "classifier"):
        for name, kw in cells.items():
            r = noisesearch.search(reward=reward, labels=labels, seed=11, **kw, **mode)
            print(f"{reward:12s} {name:22s} {digest(r)} nfe={r.nfe.tolist()}", flush=True)
    cal_kwargs = dict(conditions=3, seed=5, method="final", N=2, K=3, eps=0.4, lambda_=0.15, moves=(), beams=(1,))
    schedule = calibrate("brightness", CalibrationConfig(**cal_kwargs, target_nfe=90), **mode)
    d = schedule.to_dict()
    d["info"] = {k: v for k, v in d["info"].items() if k != "sampler"}
    print("calibrated schedule", hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16],
          schedule.K, schedule.eps)
    adaptive = {"adaptive_budget": dict(target_nfe=90), "adaptive_plain": {},
                "adaptive_budget_patience_B2": dict(target_nfe=120, patience=1, B=2)}
    for name, kw in adaptive.items():
        r = noisesearch.search(algorithm="adaptive_eps_greedy", reward="brightness", labels=labels, seed=11,
                               search_schedule=schedule, **kw, **mode)
        print(f"{'brightness':12s} {name:22s} {digest(r)} nfe={r.nfe.tolist()}", flush=True)


if __name__ == "__main__":
    main()
