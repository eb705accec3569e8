"""Peak memory of scoring 256 latent candidates (VAE decode + reward) against max_batch, side by side.

Each setting runs in a fresh subprocess on a small random Stable Diffusion pipeline (32x32 latents,
64x64 images) built in a temporary directory; the peak resident memory above the process's
baseline after loading is read from getrusage. With a small max_batch the peak must stay under
--cap-mb however many candidates are scored.

    python benchmarks/memory.py [--candidates 256] [--batches 8,64,256] [--cap-mb 100]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, sys.argv[1])
from noisesearch import Problem, get_reward
from noisesearch.backends.diffusers_backend import DiffusersDenoiser, load_pipeline
pipe = load_pipeline(sys.argv[2])
denoiser = DiffusersDenoiser(pipe, ["a photo"], guidance_scale=1.0)
n, max_batch = int(sys.argv[3]), int(sys.argv[4])
problem = Problem(denoiser, get_reward("brightness"), torch.tensor([0]), [0], max_batch=max_batch)
latents = torch.randn(1, n, *denoiser.image_shape, generator=torch.Generator().manual_seed(0))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
scores = problem.score(latents)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"max_batch": max_batch, "extra_mb": (peak - base) / 1024, "scores": int(scores.numel())}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", type=int, default=256)
    p.add_argument("--batches", default="8,64,256")
    p.add_argument("--cap-mb", type=float, default=100.0)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_pipeline import save_tiny_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        pipe_dir = save_tiny_pipeline(Path(tmp), sample_size=32)
        rows = []
        for max_batch in [int(b) for b in args.batches.split(",")]:
            out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "tests"), str(pipe_dir),
                                  str(args.candidates), str(max_batch)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    smallest = min(rows, key=lambda r: r["max_batch"])
    for r in rows:
        print(f"scoring {args.candidates} candidates, max_batch {r['max_batch']:>4}: peak +{r['extra_mb']:.0f} MB")
    verdict = "within" if smallest["extra_mb"] <= args.cap_mb else "OVER"
    largest = max(rows, key=lambda r: r["max_batch"])
    print(f"max_batch {smallest['max_batch']}: {smallest['extra_mb']:.0f} MB, {verdict} the {args.cap_mb:.0f} MB cap; "
          f"ratio to max_batch {largest['max_batch']}: {smallest['extra_mb'] / max(largest['extra_mb'], 1e-9):.3f}")


if __name__ == "__main__":
    main()
