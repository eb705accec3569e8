"""search(): one call from names to a SearchResult, on any registered backend or a denoiser of your own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from noisesearch import cost
from noisesearch.backends import get_backend, load_backend_denoiser
from noisesearch.denoiser import Denoiser
from noisesearch.models.labels import check_labels
from noisesearch.problem import Problem, check_denoiser, check_settings
from noisesearch.progress import ProgressCallback, TqdmProgress
from noisesearch.rewards.registry import make_reward
from noisesearch.sampling import Sampler
from noisesearch.search import get_algorithm
from noisesearch.seeds import sample_seeds
from noisesearch.types import SearchResult


def search(
    *,
    algorithm: str = "naive",
    reward: str = "classifier",
    evaluator: str | None = "auto",
    **problem_args: Any,
) -> SearchResult:
    """Search the noise of one sample per condition with a registered algorithm and reward.

    `problem_args` are those of `make_problem` (labels or prompts, seed or seeds, backend, model,
    denoiser, sampler, steps, guidance, max_batch, nfe_budget, progress, device, dtype, reward_args);
    any other keyword is a parameter of the algorithm (e.g. N=4). The held-out `evaluator` ("auto": the
    backend's, e.g. the MNIST evaluator on the embedded backend; None: none) scores the final images.
    The result's config holds everything needed to rerun.
    """
    problem_keys = set(make_problem.__kwdefaults__)
    params = {k: v for k, v in problem_args.items() if k not in problem_keys}
    algo = get_algorithm(algorithm, **params)
    problem, config = make_problem(reward=reward, **{k: v for k, v in problem_args.items() if k in problem_keys})
    if evaluator == "auto":
        evaluator = get_backend(config["backend"]).evaluator
    result = algo.run(problem)
    described = {k: v for k, v in config.items() if k not in ("device", "dtype")}
    formula = algo.nfe_formula(problem.sampler)
    config = result.config | described | {
        "nfe_budget": config["nfe_budget"], "evaluator": evaluator, "nfe_formula": algo.nfe_doc,
        "nfe_formula_per_image": None if formula is None else cost.nfe(formula, problem.denoiser),
        "device": config["device"], "dtype": config["dtype"]}
    held_out = None
    if evaluator is not None:
        held_out = make_reward(evaluator, config.get("prompts"), config["device"])(result.images, problem.cond)
    return replace(result, config=config, evaluator_rewards=held_out)


def make_problem(
    *,
    reward: str = "classifier",
    labels: Sequence[int] | None = (0,),
    prompts: Sequence[str] | None = None,
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    backend: str = "embedded",
    model: str | None = None,
    denoiser: Denoiser | None = None,
    guidance: float | None = None,
    sampler: str | Sampler | None = None,
    steps: int = 18,
    max_batch: int = 16,
    nfe_budget: int | None = None,
    progress: bool | ProgressCallback = False,
    device: str = "cpu",
    dtype: str = "float32",
    reward_args: dict[str, Any] | None = None,
) -> tuple[Problem, dict[str, Any]]:
    """The metered Problem that `search` runs an algorithm on, and the config entries that describe it.

    Conditions are `labels` (class indices) on label backends (the embedded MNIST model; `edm`, an
    EDM-style network whose file is `model`) and `prompts` on prompt backends (`diffusers`: `model` a
    local pipeline directory; guidance its CFG scale, default 7.5); `noisesearch list` shows the
    registered backends. A `denoiser` object replaces the backend's loader. Sample i uses seed
    `seed + i` unless `seeds` lists one per condition. `sampler` is a registered sampler name (default:
    the backend's) fitted to the denoiser with `steps` steps, or a Sampler. `progress`: True for a
    progress bar, or a callback that receives ProgressEvents."""
    spec = get_backend(backend)
    check_settings(max_batch, nfe_budget)
    cond, conditions = spec.make_conditions(labels, prompts)
    guidance = spec.guidance_or_default(guidance)
    seed_list = list(seeds) if seeds is not None else sample_seeds(seed, len(cond))
    reward_fn = make_reward(reward, prompts, device, **(reward_args or {}))
    if denoiser is None:
        denoiser = load_backend_denoiser(backend, model, guidance, prompts, device, dtype)
    check_denoiser(denoiser)
    if spec.conditions == "labels" and denoiser.label_dim is not None:
        cond = check_labels(cond, denoiser.label_dim)
    if not isinstance(sampler, (str, type(None))):
        chosen = sampler
    else:
        chosen = denoiser.default_sampler(sampler or spec.default_sampler, steps)
    callback = TqdmProgress() if progress is True else (progress or None)
    problem = Problem(denoiser, reward_fn, cond, seed_list, chosen, max_batch=max_batch, nfe_budget=nfe_budget,
                      callback=callback)
    return problem, conditions | {
        "backend": backend, "model": model, "reward": reward, "reward_args": reward_args or {},
        "seeds": seed_list, "guidance": guidance, "sampler": chosen.to_dict(), "max_batch": max_batch,
        "nfe_budget": nfe_budget, "device": device, "dtype": dtype,
    }

