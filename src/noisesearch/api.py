"""search(): one call from names to a SearchResult on the embedded model (or any denoiser)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from noisesearch.backends import check_labels, load_model
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Denoiser, Problem, check_settings
from noisesearch.rewards import get_reward
from noisesearch.sampling import EDMSchedule
from noisesearch.search import get_algorithm
from noisesearch.types import SearchResult


def sample_seeds(seed: int, n: int) -> list[int]:
    """Seeds of n samples of a run with base `seed`: sample i uses seed + i (as EDM's --seeds)."""
    if seed < 0:
        raise NoiseSearchError(f"seed must be non-negative, got {seed}")
    return [seed + i for i in range(n)]


def draw_labels(n: int, seed: int) -> list[int]:
    """n class labels drawn uniformly from 0-9 by a generator seeded with `seed` (the brief's random labels)."""
    return torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def search(
    algorithm: str = "naive",
    reward: str = "classifier",
    labels: Sequence[int] = (0,),
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    guidance: float = 1.0,
    denoiser: Denoiser | None = None,
    schedule: EDMSchedule | None = None,
    max_batch: int = 16,
    nfe_budget: int | None = None,
    evaluator: str | None = "evaluator",
    progress: bool = False,
    **params: Any,
) -> SearchResult:
    """Search the noise of one sample per label with a registered algorithm and reward.

    Sample i uses seed `seed + i` unless `seeds` lists one per label. `params` are the algorithm's
    parameters (e.g. N=4). The result's config holds everything needed to rerun it.
    """
    labels_t = check_labels(torch.as_tensor(list(labels)))
    if len(labels_t) == 0:
        raise NoiseSearchError("give at least one label")
    check_settings(max_batch, nfe_budget)
    seed_list = list(seeds) if seeds is not None else sample_seeds(seed, len(labels_t))
    algo = get_algorithm(algorithm, **params)
    reward_fn = get_reward(reward)
    model = denoiser if denoiser is not None else load_model(guidance)
    problem = Problem(model, reward_fn, labels_t, seed_list, schedule, max_batch, nfe_budget, progress=progress)
    result = algo.run(problem)
    config = result.config | {
        "reward": reward,
        "labels": labels_t.tolist(),
        "seeds": seed_list,
        "guidance": guidance,
        "schedule": problem.schedule.to_dict(),
        "max_batch": max_batch,
        "nfe_budget": nfe_budget,
        "evaluator": evaluator,
        "nfe_formula": algo.nfe_doc,
    }
    held_out = None
    if evaluator is not None:
        held_out = get_reward(evaluator)(result.images, labels_t)
    return replace(result, config=config, evaluator_rewards=held_out)
