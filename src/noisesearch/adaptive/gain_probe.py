"""Probing what searching one step buys in the final reward (the "final" calibration).

For each searchable step t, ε-greedy runs k iterations at step t alone, starting from each condition's
naive trajectory, and the trajectory is then finished with the naive run's own noise for every later
step (common random numbers). The final reward minus the naive final reward is the gain of k
iterations at step t, free of the noise of later steps and of what searching earlier steps already
achieved — unlike the x0-prediction gains of an ε-greedy run that searches every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.rng import SampleGenerators
from noisesearch.search.local import EpsGreedy
from noisesearch.search.tracing import TraceRecorder
from noisesearch.seeds import probe_seeds
from noisesearch.types import Trace


@dataclass(frozen=True)
class FinalGains:
    """Mean final-reward gain over the naive sample of searching only step t for ks[j] iterations:
    gain[t, j] ± sem[t, j] at σ = sigmas[t]; `trace` holds the climbs of max(ks) iterations."""

    gain: np.ndarray
    sem: np.ndarray
    sigmas: np.ndarray
    ks: tuple[int, ...]
    naive_reward: float
    trace: Trace


def probe_ladder(K: int) -> tuple[int, ...]:
    """Iteration counts probed at every step: 1, K^(1/3), K^(2/3) and K, rounded and deduplicated."""
    if not isinstance(K, int) or K < 1:
        raise NoiseSearchError(f"K must be an integer of at least 1, got {K}")
    return tuple(sorted({1, round(K ** (1 / 3)), round(K ** (2 / 3)), K}))


def probe_final_gains(problem: Problem, ks: Sequence[int], N: int = 4, eps: float = 0.4,
                      lambda_: float = 0.15) -> FinalGains:
    """Final-reward gains of k ∈ ks ε-greedy (N, eps, lambda_) iterations at each searchable step alone.

    One climb of max(ks) iterations per step serves every k (the climb of k iterations is its first k), so a
    condition costs one naive trajectory, and per searchable step i N·max(ks) + Σ_k (c_i − 1 + the calls left
    after the step), c_i the sampler's calls of step i; every call goes through the metered `problem`."""
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise NoiseSearchError(f"probe iteration counts must be integers of at least 1, got {list(ks)}")
    climber = EpsGreedy(N=N, K=max(ks), eps=eps, lambda_=lambda_)
    sampler, shape = problem.sampler, problem.image_shape
    searchable = sampler.searchable_steps()
    gens = problem.generators()
    x = problem.initial_state(gens.randn(1, *shape))
    states, noises = [], []
    for i in range(sampler.steps):
        states.append(x)
        noises.append(gens.randn(1, *shape) if i in searchable else None)
        x = problem.step(x, i, noises[i]).x_next
    naive = problem.score(x)[:, 0]
    conditions = torch.arange(problem.n)
    recorder = TraceRecorder()
    gain = np.zeros((len(searchable), len(ks)))
    sem = np.zeros_like(gain)
    ks = sorted(set(ks))
    for t, i in enumerate(searchable):
        climb_gens = SampleGenerators(probe_seeds(problem.seeds, t))
        limit = torch.full((problem.n,), ks[-1], dtype=torch.long)
        j = 0
        for k, kept, _ in climber.climb_iterations(problem, climb_gens, states[i], i, N, eps, conditions, limit,
                                                   recorder):
            if k != ks[j]:
                continue
            y = climber.finish_climb(problem, kept, i, conditions)
            for later in range(i + 1, sampler.steps):
                y = problem.step(y, later, noises[later]).x_next
            diff = (problem.score(y)[:, 0] - naive).double().numpy()
            gain[t, j] = diff.mean()
            sem[t, j] = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
            j += 1
    sigmas = np.array([float(sampler.sigmas[i]) for i in searchable])
    return FinalGains(gain, sem, sigmas, tuple(ks), float(naive.mean()), recorder.build())
