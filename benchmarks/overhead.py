"""Overhead of the metered Problem over the bare network, measured side by side in one run.

Two comparisons on the embedded model (packaged weights, or a random model of the same
architecture with --random):
  1. one denoiser call on a batch of B images: Problem.denoise vs EDMPrecond.forward;
  2. a full naive trajectory of B images: the `naive` algorithm through Problem vs a bare EDM
     sampler loop calling the network directly.
Repetitions alternate A, B, A, B so that drift in machine speed hits both; medians are reported.

    python benchmarks/overhead.py [--batch 64] [--reps 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from noisesearch import Problem, cost, get_algorithm, get_reward, load_model, make_sampler
from noisesearch.backends import EmbeddedDenoiser
from noisesearch.models.unet import EDMPrecond, UNetConfig
from noisesearch.sampling import Sampler


def bare_trajectory(net: EDMPrecond, labels: torch.Tensor, noises: list[torch.Tensor], sampler: Sampler):
    """The sampler loop with direct network calls and no metering."""
    x = sampler.initial_state(noises[0])
    b = x.shape[0]
    with torch.no_grad():
        for i in range(sampler.steps):
            x_hat = sampler.propose(x, i, noises[i + 1])
            d = net(x_hat, sampler.sigma_hats[i].expand(b), labels)
            x = sampler.advance(lambda y, s: net(y, s.expand(b), labels), x_hat, d, i)[0]
    return x


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(a, b, reps: int) -> tuple[float, float]:
    ta, tb = [], []
    a(), b()  # warm-up
    for _ in range(reps):
        ta.append(timed(a))
        tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--random", action="store_true", help="random weights instead of the packaged ones")
    args = p.parse_args()
    denoiser = EmbeddedDenoiser(EDMPrecond(UNetConfig())) if args.random else load_model()
    net = denoiser.model
    b = args.batch
    labels = torch.arange(b) % 10
    problem = Problem(denoiser, get_reward("brightness"), labels, list(range(b)))
    x = torch.randn(b, 1, 28, 28)
    sigma = torch.tensor(2.0)

    def bare_call():
        with torch.no_grad():
            net(x, sigma.expand(b), labels)

    t_bare, t_problem = side_by_side(bare_call, lambda: problem.denoise(x[:, None], sigma), args.reps)
    print(f"one call, batch {b}: bare {t_bare * 1e3:.2f} ms, Problem {t_problem * 1e3:.2f} ms, "
          f"ratio {t_problem / t_bare:.3f}")

    sampler = make_sampler("heun")
    gens = [torch.Generator().manual_seed(s) for s in range(b)]
    noises = [torch.stack([torch.randn(1, 28, 28, generator=g) for g in gens]) for _ in range(sampler.steps + 1)]
    naive = get_algorithm("naive")
    reps = max(3, args.reps // 3)
    t_bare, t_problem = side_by_side(
        lambda: bare_trajectory(net, labels, noises, sampler),
        lambda: naive.run(Problem(denoiser, get_reward("brightness"), labels, list(range(b)), sampler)),
        reps)
    nfe = b * cost.trajectory_calls(sampler)
    print(f"naive trajectory, batch {b}: bare {t_bare * 1e6 / nfe:.1f} us/NFE, Problem {t_problem * 1e6 / nfe:.1f} "
          f"us/NFE, ratio {t_problem / t_bare:.3f}")


if __name__ == "__main__":
    main()
