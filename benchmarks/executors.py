"""One preset's bench under the serial, process and Ray executors, side by side in one run, and Ray's cost per cell.

For each executor (serial with torch's threads, as the CLI runs it; serial-1t, serial on one thread, whose
cell times are a one-CPU worker's; process; ray): the time to start it (spawning the pool, starting Ray),
the bench's wall time, and each worker's cells, CPU seconds and CPU use (CPU / wall of its cells, from
cells.jsonl), with the driver's own CPU seconds; the records are checked to be identical to serial's. Then
the fixed cost of one cell: M trivial tasks through the process pool and through Ray (latency of one alone,
and the time per task when M run on the W workers, so o = W x that is what one task costs a worker's slot),
which gives the break-even cell size c* = o / (W - 1) (W workers beat serial once cells take longer), and a
cost model of the preset on more workers (start + ceil(cells / W) rounds of a mean serial-1t cell + o): what
the design gives on W single-CPU workers spread over N machines, while only 2 cores are here.

    python benchmarks/executors.py [--preset table1 --rewards brightness --labels 4] [--workers 2]
    python benchmarks/executors.py --tiny     # a seconds-long check on a random tiny model
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from noisesearch.executors import Executor, ProcessExecutor, RayExecutor, SerialExecutor
from noisesearch.experiments.bench import run_bench
from noisesearch.experiments.presets import get_preset, override
from noisesearch.experiments.store import CELL_LOG, RESULTS
from noisesearch.testing import tiny_denoiser


def trivial(task: int) -> int:
    """An empty cell: what a task costs when it does nothing."""
    return task


def records(run: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run / RESULTS).read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if not k.endswith("wall_time_s")} for r in lines),
                  key=lambda r: (r["cell"], r["label_index"]))


def bench_under(name: str, make: Callable[[], Executor], workers: int, preset, root: Path, loader) -> dict:
    """Start the executor (and its `workers` workers), run the preset on it, and read where and how long its
    cells ran; "serial-1t" is serial with one torch thread (a one-CPU worker's cell times)."""
    threads = torch.get_num_threads()
    if name == "serial-1t":
        torch.set_num_threads(1)
    try:
        return bench_on(name, make, workers, preset, root, loader)
    finally:
        torch.set_num_threads(threads)


def bench_on(name: str, make: Callable[[], Executor], workers: int, preset, root: Path, loader) -> dict:
    start = time.perf_counter()
    executor: Executor = make()
    list(executor.map(trivial, list(range(4 * workers))))  # its workers up, so that start_s is the whole start
    started = time.perf_counter()
    cpu = time.process_time()
    try:
        run_bench(preset, root / name, progress=False, model_loader=loader, executor=executor)
    finally:
        ran = time.perf_counter()
        executor.close()
    workers: dict[str, dict[str, float]] = defaultdict(lambda: {"cells": 0, "cpu_s": 0.0, "wall_s": 0.0,
                                                                 "threads": 0})
    for line in (root / name / CELL_LOG).read_text().splitlines():
        worker = json.loads(line)["worker"]
        w = workers[f"{worker['host']}:{worker['pid']}"]
        w["cells"] += 1
        w["threads"] = worker["threads"]
        w["cpu_s"] += worker["cpu_s"]
        w["wall_s"] += worker["wall_s"]
    return {"start_s": started - start, "run_s": ran - started, "driver_cpu_s": time.process_time() - cpu,
            "workers": dict(workers), "records": records(root / name)}


def task_overhead(executor: Executor, count: int) -> tuple[float, float]:
    """Seconds of one trivial task alone (round trip), and per task when `count` run at once (throughput)."""
    list(executor.map(trivial, list(range(count))))  # warm: every worker up, the function shipped
    latencies = []
    for i in range(5):
        start = time.perf_counter()
        list(executor.map(trivial, [i]))
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    outcomes = list(executor.map(trivial, list(range(count))))
    assert sorted(o.value for o in outcomes) == list(range(count))
    return statistics.median(latencies), (time.perf_counter() - start) / count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="table1")
    p.add_argument("--algorithms", default=None, help="only these runs of the preset (default: all)")
    p.add_argument("--rewards", default="brightness")
    p.add_argument("--labels", type=int, default=4)
    p.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    p.add_argument("--workers", type=int, default=2, help="process workers and Ray CPUs")
    p.add_argument("--trivial", type=int, default=50, help="trivial tasks for the per-cell overhead")
    p.add_argument("--tiny", action="store_true", help="a quick check: random tiny model, 1 label, 4 steps")
    args = p.parse_args()
    preset = override(get_preset(args.preset), args.algorithms and args.algorithms.split(","), args.rewards.split(","),
                      1 if args.tiny else args.labels, 1)
    if args.tiny or args.steps:
        preset = replace(preset, steps=4 if args.tiny else args.steps)
    loader = tiny_denoiser if args.tiny else None
    W = args.workers
    import ray

    engines = {
        "serial": SerialExecutor,
        "serial-1t": SerialExecutor,
        "process": lambda: ProcessExecutor(workers=W),
        "ray": lambda: RayExecutor(address="local", num_cpus=W, include_dashboard=False, log_to_driver=False),
    }
    print(f"preset {preset.name}: {len(preset.runs)} runs x {len(preset.rewards)} columns, {preset.labels} labels, "
          f"{preset.steps} steps, {'tiny random model' if args.tiny else 'packaged model'}; "
          f"{W} workers / Ray CPUs on {torch.get_num_threads()}-thread torch")
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: bench_under(name, make, W, preset, Path(tmp), loader) for name, make in engines.items()}
    cells = sum(w["cells"] for w in results["serial-1t"]["workers"].values())
    print("\nstart: the executor and its warm workers (without their models); bench: run_bench on it")
    print(f"{'executor':<9} {'start s':>8} {'bench s':>8} {'vs serial':>9} {'driver CPU s':>12}  records")
    for name, r in results.items():
        same = "identical to serial" if r["records"] == results["serial"]["records"] else "DIFFER from serial"
        print(f"{name:<9} {r['start_s']:8.2f} {r['run_s']:8.2f} {results['serial']['run_s'] / r['run_s']:8.2f}x "
              f"{r['driver_cpu_s']:12.2f}  {same}")
    print(f"\n{'executor':<9} {'worker':<28} {'threads':>7} {'cells':>5} {'CPU s':>8} {'wall s':>8} {'CPU use':>8}")
    for name, r in results.items():
        for worker, w in sorted(r["workers"].items()):
            print(f"{name:<9} {worker:<28} {w['threads']:7d} {w['cells']:5d} {w['cpu_s']:8.2f} {w['wall_s']:8.2f} "
                  f"{w['cpu_s'] / max(w['wall_s'], 1e-9):7.0%}")

    overheads = {}
    with ProcessExecutor(workers=W) as pool:
        overheads["process"] = task_overhead(pool, args.trivial)
    with RayExecutor(address="local", num_cpus=W, include_dashboard=False, log_to_driver=False) as on_ray:
        overheads["ray"] = task_overhead(on_ray, args.trivial)
    assert not ray.is_initialized()
    cell_s = sum(w["wall_s"] for w in results["serial-1t"]["workers"].values()) / cells
    print(f"\nper-cell overhead ({args.trivial} trivial tasks); mean cell of this preset on one thread: {cell_s:.3f} s")
    print(f"{'executor':<9} {'one task ms':>11} {'per task at W ms':>16} {'break-even cell s':>17}")
    slot = {name: per_task * W for name, (_, per_task) in overheads.items()}  # what a task costs a worker
    for name, (latency, per_task) in overheads.items():
        print(f"{name:<9} {latency * 1e3:11.1f} {per_task * 1e3:16.2f} {slot[name] / max(W - 1, 1):17.4f}")
    print(f"\ncost model of this preset's {cells} cells on W one-CPU workers (start + ceil(cells / W) rounds of a "
          "mean cell plus its overhead; real cells vary, a run lasts as long as its slowest round):")
    print(f"{'W':>5} " + " ".join(f"{name + ' s':>10}" for name in overheads))
    for workers in (1, 2, 8, 32, 128):
        row = [results[name]["start_s"] + math.ceil(cells / workers) * (cell_s + slot[name]) for name in slot]
        print(f"{workers:5d} " + " ".join(f"{t:10.2f}" for t in row))


if __name__ == "__main__":
    main()
