"""The cost of scoring through a verifier service on loopback: a remote reward vs the same reward in-process.

Per call, at 1, 4 and 16 images: the median latency of one client and the throughput (images/s) of one and of
four concurrent clients; then the overhead a search pays: the wall time of ε-greedy (N=4, K=20) on 16 labels
with `remote` serving the reward vs in-process, alternated and side by side in one run, with their ratio (target:
remote overhead under 10 % of the search's wall time on the embedded model). The remote search must give the
in-process search's images and rewards bit for bit; the script checks it.

The service is the one at --url, or one this script starts with `noisesearch serve-verifier REWARD --port P` and
stops (SIGTERM) at the end. With --own-cores the started service runs on the last CPU and this script (both the
in-process and the remote searches) on the others, one torch thread each side: the deployment a service is
for (its own cores or GPU), where the search and the service do not take turns on the same cores.

    python benchmarks/remote_reward.py [--url http://127.0.0.1:P] [--reward classifier] [--reps 3] [--own-cores]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import torch

import noisesearch as ns
from noisesearch.verifier_protocol import HEALTH_PATH

BATCHES = (1, 4, 16)
CLIENTS = 4


@contextlib.contextmanager
def service(url: str | None, reward: str, cpus: set[int] | None = None, startup_s: float = 120) -> Iterator[str]:
    """The url of the service at `url`, or of one started here (`noisesearch serve-verifier`, on `cpus` with one
    torch thread where they are given) and stopped after."""
    if url is not None:
        yield url
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pinned = {} if cpus is None else {"env": {**os.environ, "OMP_NUM_THREADS": "1"},
                                      "preexec_fn": lambda: os.sched_setaffinity(0, cpus)}
    proc = subprocess.Popen([sys.executable, "-m", "noisesearch.cli", "serve-verifier", reward, "--host",
                             "127.0.0.1", "--port", str(port)], **pinned)
    started = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"noisesearch serve-verifier {reward} exited with code {proc.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(started + HEALTH_PATH, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"noisesearch serve-verifier {reward} did not answer within {startup_s:g} s")
            time.sleep(0.2)
        yield started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def median_latency(score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor,
                   cond: torch.Tensor, calls: int) -> float:
    """The median seconds of one call of one client, over `calls` calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        score(images, cond)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def concurrent_throughput(score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor,
                          cond: torch.Tensor, calls: int) -> float:
    """Images per second that CLIENTS threads, each making `calls` calls, get scored in all."""
    threads = [threading.Thread(target=lambda: [score(images, cond) for _ in range(calls)]) for _ in range(CLIENTS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return CLIENTS * calls * len(images) / (time.perf_counter() - start)


def per_call(local: Callable, remote: ns.RemoteReward, calls: int) -> None:
    print(f"{'images/call':>11}  {'latency ms (local / remote)':>28}  {'1 client img/s (local / remote)':>32}  "
          f"{f'{CLIENTS} clients img/s (local / remote)':>33}")
    for b in BATCHES:
        images = torch.rand(b, 1, 28, 28, generator=torch.Generator().manual_seed(b)) * 2 - 1
        cond = torch.arange(b) % 10
        if not torch.equal(local(images, cond), remote(images, cond)):
            raise SystemExit(f"the remote reward's scores differ from the in-process ones at {b} images per call")
        lat = [median_latency(s, images, cond, calls) for s in (local, remote)]
        many = [concurrent_throughput(s, images, cond, calls) for s in (local, remote)]
        print(f"{b:>11}  {lat[0] * 1e3:>12.2f} / {lat[1] * 1e3:>12.2f}  {b / lat[0]:>15.0f} / {b / lat[1]:>14.0f}  "
              f"{many[0]:>15.0f} / {many[1]:>15.0f}")


def search_overhead(url: str, reward: str, labels: int, N: int, K: int, reps: int, steps: int) -> None:
    denoiser = ns.load_model()
    args = {"algorithm": "eps_greedy", "labels": [k % 10 for k in range(labels)], "seed": 0, "denoiser": denoiser,
            "evaluator": None, "N": N, "K": K, "steps": steps}
    local_s, remote_s = [], []
    for _ in range(reps):  # alternated, so that a slow spell of the machine hits both
        local = ns.search(reward=reward, **args)
        remote = ns.search(reward="remote", reward_args={"url": url}, **args)
        if not (torch.equal(local.images, remote.images) and torch.equal(local.rewards, remote.rewards)):
            raise SystemExit("the remote search's images or rewards differ from the in-process search's")
        local_s.append(local.wall_time)
        remote_s.append(remote.wall_time)
    t_local, t_remote = statistics.median(local_s), statistics.median(remote_s)
    print(f"eps_greedy (N={N}, K={K}) on {labels} labels, {steps} steps, median of {reps}: in-process "
          f"{t_local:.2f} s, remote {t_remote:.2f} s, ratio {t_remote / t_local:.3f} (overhead "
          f"{(t_remote - t_local) / t_remote:.1%} of the remote search's wall time); identical results")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="a running verifier service serving --reward (default: start one)")
    p.add_argument("--reward", default="classifier", help="the reward served and compared with in-process")
    p.add_argument("--calls", type=int, default=50, help="calls per measurement of the per-call table")
    p.add_argument("--labels", type=int, default=16)
    p.add_argument("--N", type=int, default=4)
    p.add_argument("--K", type=int, default=20)
    p.add_argument("--steps", type=int, default=18)
    p.add_argument("--reps", type=int, default=3, help="searches of each kind")
    p.add_argument("--own-cores", action="store_true",
                   help="the started service on the last CPU, this script on the others, one torch thread each")
    args = p.parse_args()
    torch.manual_seed(0)
    service_cpus = None
    if args.own_cores:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2 or args.url is not None:
            raise SystemExit("--own-cores needs two CPUs or more and a service this script starts (no --url)")
        service_cpus = {cpus[-1]}
        os.sched_setaffinity(0, set(cpus[:-1]))
        torch.set_num_threads(1)
        print(f"service on CPU {cpus[-1]}, searches on CPU(s) {cpus[:-1]}, one torch thread each")
    with service(args.url, args.reward, service_cpus) as url:
        remote = ns.RemoteReward(url)
        print(f"{remote.name} version {remote.version} at {url} vs {args.reward} in-process")
        per_call(ns.get_reward(args.reward), remote, args.calls)
        search_overhead(url, args.reward, args.labels, args.N, args.K, args.reps, args.steps)


if __name__ == "__main__":
    main()
