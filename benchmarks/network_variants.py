"""Faster network paths for the embedded UNet, measured side by side in one run against the eager path.

For each batch size (rows per call) every variant's median time per call is printed beside eager fp32 under
torch.no_grad, as a speed-up, with the largest absolute difference of its x0 prediction from the eager one:
  inference_mode   torch.inference_mode instead of no_grad
  channels_last    the model and its inputs in channels_last memory format
  bf16_autocast    torch.autocast("cpu", bfloat16)
  compile          torch.compile (inductor), after its warm-up compilations (their time is printed)
Repetitions alternate over the variants so that drift in machine speed hits all of them; medians are reported.

    python benchmarks/network_variants.py [--batches 1,4,16,64] [--reps 30] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from noisesearch import load_model
from noisesearch.models.unet import EDMPrecond

Call = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def variants(model: EDMPrecond) -> dict[str, Call]:
    """Each variant as a call of (x, sigma, labels) -> x0."""
    last = EDMPrecond(model.cfg).eval().requires_grad_(False).to(memory_format=torch.channels_last)
    last.load_state_dict(model.state_dict())
    compiled = torch.compile(model, dynamic=False)

    def eager(x, s, y):
        with torch.no_grad():
            return model(x, s, y)

    def inference(x, s, y):
        with torch.inference_mode():
            return model(x, s, y)

    def channels_last(x, s, y):
        with torch.inference_mode():
            return last(x.contiguous(memory_format=torch.channels_last), s, y)

    def bf16(x, s, y):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x, s, y).float()

    def compile_(x, s, y):
        with torch.inference_mode():
            return compiled(x, s, y)

    return {"eager": eager, "inference_mode": inference, "channels_last": channels_last, "bf16_autocast": bf16,
            "compile": compile_}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,4,16,64")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model().model
    calls = variants(model)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu_capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    header = "".join(f"{name:>22s}" for name in calls if name != "eager")
    print(f"{'rows':>5s} {'eager ms':>9s}{header}   (speed-up over eager, max |x0 - eager x0|)")
    for b in (int(v) for v in args.batches.split(",")):
        gen = torch.Generator().manual_seed(b)
        x = torch.randn(b, 1, 28, 28, generator=gen) * 2
        sigma = torch.full((b,), 2.0)
        labels = torch.arange(b) % 10
        reference = calls["eager"](x, sigma, labels)
        start = time.perf_counter()
        diffs = {name: float((call(x, sigma, labels) - reference).abs().max()) for name, call in calls.items()}
        first = time.perf_counter() - start
        times: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(args.reps):
            for name, call in calls.items():
                t = time.perf_counter()
                call(x, sigma, labels)
                times[name].append(time.perf_counter() - t)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        cells = "".join(f"{med['eager'] / med[name]:>12.2f}x {diffs[name]:8.1e}" for name in calls if name != "eager")
        print(f"{b:5d} {med['eager'] * 1e3:9.2f}{cells}   (first calls incl. compilation {first:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
