"""`noisesearch generate` against `sample`: wall time, peak memory and identical records, side by side in one run.

One conditions file of C labels (label i = i mod 10), one search (default ε-greedy (4, 20), 18 steps, the
classifier reward, --dtype), run alone, one after another, each as its own command:

- generate --executor serial (the driver's torch threads: all cores), and again with one torch thread
  (OMP_NUM_THREADS=1), the thread count of each worker below;
- generate --executor process --workers W (one torch thread each, W = cores);
- generate --executor ray (a local Ray instance, W tasks of one CPU);
- one `sample` over all C labels (--labels with every label, --yes).

Peak memory is the most resident memory of the command's whole process tree at once (the driver, its workers
and, for Ray, its raylet and GCS), sampled every 0.5 s from /proc. The script checks that the executors' records
are equal field by field but wall times, and images byte for byte, to those of the one-thread serial run (CPU
kernels may sum in another order under another thread count), and compares `sample`'s rewards with them.

    python benchmarks/generate_throughput.py [--conditions 500] [--N 4] [--K 20] [--dtype bfloat16] [--skip ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from noisesearch.drivers.dataset import read_records
from noisesearch.environment import cpu_model

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants now (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run `command` with `env` added to the environment; its wall seconds, the peak MB of its process tree and
    its last output line."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=os.environ | env)
    peak = [0]

    def watch() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss(process.pid))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    output = process.communicate()[0]
    seconds = time.perf_counter() - start
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output}")
    return seconds, peak[0] / 2**20, output.strip().splitlines()[-1]


def records(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_time_s"} for r in read_records(out, with_images=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conditions", type=int, default=500)
    parser.add_argument("--N", type=int, default=4)
    parser.add_argument("--K", type=int, default=20)
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("--dtype", default="float32", help="the network's dtype (bfloat16: autocast)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", default="",
                        help="comma-separated runs to leave out: serial,serial-1t,process,ray,sample")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    noisesearch = [sys.executable, "-m", "noisesearch.cli"]
    search = ["--algorithm", "eps_greedy", "--N", str(args.N), "--K", str(args.K), "--reward", "classifier",
              "--steps", str(args.steps), "--dtype", args.dtype, "--no-progress"]
    labels = [i % 10 for i in range(args.conditions)]
    root = Path(tempfile.mkdtemp(prefix="generate-bench-"))
    try:
        conditions = root / "labels.txt"
        conditions.write_text("".join(f"{label}\n" for label in labels))
        runs = {
            "serial": [*noisesearch, "generate", "--conditions", str(conditions), "--out", str(root / "serial"),
                       *search],
            "serial-1t": [*noisesearch, "generate", "--conditions", str(conditions), "--out",
                          str(root / "serial-1t"), *search],
            "process": [*noisesearch, "generate", "--conditions", str(conditions), "--out", str(root / "process"),
                        *search, "--executor", "process", "--workers", str(args.workers)],
            "ray": [*noisesearch, "generate", "--conditions", str(conditions), "--out", str(root / "ray"), *search,
                    "--executor", "ray"],
            "sample": [*noisesearch, "sample", "--labels", ",".join(map(str, labels)), "--out", str(root / "sample"),
                       *search, "--yes"],
        }
        print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; {args.conditions} labels, eps_greedy (N={args.N}, "
              f"K={args.K}), {args.steps} steps, classifier reward, {args.dtype}")
        print(f"{'run':<10} {'wall s':>8} {'images/s':>9} {'peak MB':>8}  last line")
        measured = {}
        for name, command in runs.items():
            if name in skip:
                continue
            seconds, peak, line = timed(command, {"OMP_NUM_THREADS": "1"} if name == "serial-1t" else {})
            measured[name] = seconds
            print(f"{name:<10} {seconds:8.1f} {args.conditions / seconds:9.2f} {peak:8.0f}  {line[:150]}")
        done = [name for name in ("serial-1t", "serial", "process", "ray") if name in measured]
        if "serial" in measured:
            for name in measured.keys() - {"serial"}:
                print(f"{name} / serial wall time: {measured[name] / measured['serial']:.3f}")
        data = {name: records(root / name) for name in done}
        for name in done[1:]:
            same = data[name] == data[done[0]]
            if same:
                print(f"{name}: records equal to {done[0]}'s (every field but wall times, images byte for byte)")
            else:
                diff = max(abs(a["reward"] - b["reward"]) for a, b in zip(data[name], data[done[0]], strict=True))
                print(f"{name}: records DIFFER from {done[0]}'s (largest reward difference {diff:.3g})")
        if "sample" in measured and done:
            result = json.loads((root / "sample" / "result.json").read_text())
            rewards = [image["reward"] for image in result["images"]]
            base = [r["reward"] for r in data[done[0]]]
            print(f"sample: mean reward {sum(rewards) / len(rewards):.4f}, {done[0]} {sum(base) / len(base):.4f} "
                  f"(its calls batch all {args.conditions} labels, not shards: rewards equal within "
                  f"{max(abs(a - b) for a, b in zip(rewards, base, strict=True)):.2g})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
