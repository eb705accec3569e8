"""search(): one call from names to a SearchResult, on the embedded model, a diffusers pipeline or any denoiser."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch

from noisesearch.backends import check_labels, load_model
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Denoiser, Problem, check_settings
from noisesearch.rewards.registry import make_reward
from noisesearch.sampling import EDMSchedule
from noisesearch.search import get_algorithm
from noisesearch.types import SearchResult

BACKENDS = ("embedded", "diffusers", "edm")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
    guidance: float | None = None,
    denoiser: Denoiser | None = None,
    schedule: EDMSchedule | None = None,
    steps: int = 18,
    max_batch: int = 16,
    nfe_budget: int | None = None,
    evaluator: str | None = "auto",
    progress: bool = False,
    backend: str = "embedded",
    model: str | None = None,
    prompts: Sequence[str] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    reward_args: dict[str, Any] | None = None,
    **params: Any,
) -> SearchResult:
    """Search the noise of one sample per condition with a registered algorithm and reward.

    Conditions are MNIST `labels` on the embedded backend, class `labels` of an EDM-style network
    (`backend="edm"`, `model` its pickle or torch file) and `prompts` on the diffusers backend (`model`:
    a local pipeline directory or a cached hub id; guidance is its CFG scale, default 7.5).
    Sample i uses seed `seed + i` unless `seeds` lists one per condition. The held-out `evaluator`
    ("auto": the MNIST evaluator on the embedded backend, none otherwise) scores the final images.
    `params` are the algorithm's parameters (e.g. N=4). The config holds everything needed to rerun.
    """
    algo = get_algorithm(algorithm, **params)
    problem, config = make_problem(reward, labels, seed, seeds, guidance, denoiser, schedule, steps, max_batch,
                                   nfe_budget, progress, backend, model, prompts, device, dtype, reward_args)
    if evaluator == "auto":
        evaluator = "evaluator" if backend == "embedded" else None
    result = algo.run(problem)
    described = {k: v for k, v in config.items() if k not in ("device", "dtype")}
    config = result.config | described | {"nfe_budget": nfe_budget, "evaluator": evaluator,
                                          "nfe_formula": algo.nfe_doc, "device": device, "dtype": dtype}
    held_out = None
    if evaluator is not None:
        held_out = make_reward(evaluator, prompts, device)(result.images, problem.cond)
    return replace(result, config=config, evaluator_rewards=held_out)


def make_problem(
    reward: str = "classifier",
    labels: Sequence[int] = (0,),
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    guidance: float | None = None,
    denoiser: Denoiser | None = None,
    schedule: EDMSchedule | None = None,
    steps: int = 18,
    max_batch: int = 16,
    nfe_budget: int | None = None,
    progress: bool = False,
    backend: str = "embedded",
    model: str | None = None,
    prompts: Sequence[str] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    reward_args: dict[str, Any] | None = None,
) -> tuple[Problem, dict[str, Any]]:
    """The metered Problem that `search` runs an algorithm on (arguments as there) and the config entries
    that describe it."""
    if backend not in BACKENDS:
        raise NoiseSearchError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
    if dtype not in DTYPES:
        raise NoiseSearchError(f"unknown dtype '{dtype}': choose one of {', '.join(DTYPES)}")
    check_settings(max_batch, nfe_budget)
    if backend == "embedded":
        if prompts:
            raise NoiseSearchError("prompts need --backend diffusers; the embedded model takes --labels")
        cond = check_labels(torch.as_tensor(list(labels)))
        guidance = 1.0 if guidance is None else guidance
        conditions: dict[str, Any] = {"labels": cond.tolist()}
        make_denoiser = partial(load_model, guidance, weights_dir=model)
    elif backend == "edm":
        if model is None and denoiser is None:
            raise NoiseSearchError("the edm backend needs --model PATH (a network pickle or torch file)")
        if guidance not in (None, 1.0):
            raise NoiseSearchError("EDM networks have no unconditional branch: leave --guidance at 1")
        from noisesearch.backends.edm_network import load_edm_network

        cond = torch.as_tensor(list(labels), dtype=torch.long)
        guidance = 1.0
        conditions = {"labels": cond.tolist()}
        make_denoiser = partial(load_edm_network, model, device)
    else:
        if not prompts:
            raise NoiseSearchError("the diffusers backend needs at least one prompt")
        if model is None and denoiser is None:
            raise NoiseSearchError("the diffusers backend needs --model PATH (a local pipeline directory)")
        from noisesearch.backends.diffusers_backend import load_denoiser

        cond = torch.arange(len(prompts))
        guidance = 7.5 if guidance is None else guidance
        conditions = {"prompts": list(prompts)}
        make_denoiser = partial(load_denoiser, model, prompts, guidance, DTYPES[dtype], device)
    if len(cond) == 0:
        raise NoiseSearchError("give at least one condition")
    seed_list = list(seeds) if seeds is not None else sample_seeds(seed, len(cond))
    reward_fn = make_reward(reward, prompts, device, **(reward_args or {}))
    if denoiser is None:
        denoiser = make_denoiser()
    label_dim = getattr(denoiser, "label_dim", None)
    if label_dim is not None and bool(((cond < 0) | (cond >= max(label_dim, 1))).any()):
        raise NoiseSearchError(f"labels must lie in 0-{max(label_dim, 1) - 1} for this network, got {cond.tolist()}")
    if schedule is None:
        default = getattr(denoiser, "default_schedule", None)
        schedule = default(steps) if default is not None else EDMSchedule(steps=steps)
    problem = Problem(denoiser, reward_fn, cond, seed_list, schedule, max_batch, nfe_budget, progress=progress)
    return problem, conditions | {
        "backend": backend, "model": model, "reward": reward, "reward_args": reward_args or {},
        "seeds": seed_list, "guidance": guidance, "schedule": problem.schedule.to_dict(), "max_batch": max_batch,
        "device": device, "dtype": dtype,
    }
