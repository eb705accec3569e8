"""search(): one call from names to a SearchResult, on any registered backend or a denoiser of your own."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisesearch import cost
from noisesearch.backends import get_backend, load_backend_denoiser
from noisesearch.backends.diffusers_families import FAMILY_BACKENDS, make_denoiser, pipeline_family
from noisesearch.backends.registry import DTYPES, check_device
from noisesearch.batching import DEFAULT_MAX_BATCH, auto_max_batch, module_mb, parse_max_batch, probe_call
from noisesearch.checks import check_flag, is_flag, shown
from noisesearch.denoiser import Denoiser
from noisesearch.errors import NoiseSearchError
from noisesearch.metrics.population import MetricsPlan, parse_metrics, plan_metrics
from noisesearch.models.labels import check_labels
from noisesearch.problem import Problem, Reward, check_denoiser, check_settings
from noisesearch.progress import ProgressCallback, TqdmProgress
from noisesearch.rewards.registry import (
    check_evaluator,
    check_search_reward,
    make_reward,
    parse_reward_args,
    reward_factory,
)
from noisesearch.sampling import Sampler
from noisesearch.sampling.schedules import check_steps
from noisesearch.search import SearchAlgorithm, algorithm_class, get_algorithm
from noisesearch.search.base import RunContext, check_set_level
from noisesearch.seeds import check_seeds, sample_seeds
from noisesearch.types import SearchResult

DEFAULT_STEPS = 18


@dataclass(frozen=True)
class PlannedSearch:
    """A search ready to run: the algorithm, its metered Problem, the config entries that describe it, the
    held-out evaluator's name (None: none) and the population metrics to compute on its images (None: none)."""

    algorithm: SearchAlgorithm
    problem: Problem
    config: dict[str, Any]
    evaluator: str | None
    metrics: MetricsPlan | None = None

    def nfe_per_image(self) -> int:
        """NFE per image the run will spend (the formula, or the algorithm's estimate where it has none)."""
        return cost.nfe(self.algorithm.nfe_estimate(self.problem.sampler), self.problem.denoiser)

    def nfe_total(self) -> int:
        return self.nfe_per_image() * self.problem.n

    def estimate(self) -> RunEstimate:
        """NFE the run will spend and its time at the rate of a timed (unmetered, uncounted) call of max_batch rows:
        the faster of two probe calls, since the first also pays for lazy initialisation."""
        problem = self.problem
        per_image = self.nfe_per_image()
        probes = [probe_call(problem.denoiser, problem.max_batch, float(problem.sampler.sigmas[0]), problem.cond)
                  for _ in range(2)]
        rows = per_image * problem.n / problem.denoiser.nfe_per_call
        return RunEstimate(per_image, per_image * problem.n,
                           math.ceil(rows / problem.max_batch) * min(p.seconds for p in probes),
                           module_mb(problem.denoiser), max(p.peak_mb for p in probes))

    def run(self) -> SearchResult:
        """Run the search, score its images with the held-out evaluator and compute their population metrics."""
        algo, problem = self.algorithm, self.problem
        result = algo.run(problem)
        described = {k: v for k, v in self.config.items() if k not in ("device", "dtype")}
        formula = algo.nfe_formula(problem.sampler)
        config = result.config | described | {
            "nfe_budget": self.config["nfe_budget"], "evaluator": self.evaluator, "nfe_formula": algo.nfe_doc,
            "nfe_formula_per_image": None if formula is None else cost.nfe(formula, problem.denoiser),
            "device": self.config["device"], "dtype": self.config["dtype"]}
        held_out = None
        if self.evaluator is not None:
            scorer = make_reward(self.evaluator, self.config.get("prompts"), self.config["device"])
            held_out = scorer(result.images, problem.cond)
        metrics = None if self.metrics is None else self.metrics.compute(result.images)
        return replace(result, config=config, evaluator_rewards=held_out, metrics=metrics)


@dataclass(frozen=True)
class RunEstimate:
    """What a planned search will cost: NFE per image and in all, seconds at the measured call rate and memory
    (the model, and what a network call of max_batch rows added to the peak)."""

    nfe_per_image: int
    nfe_total: int
    seconds: float
    model_mb: float  # parameters and buffers of the denoiser's modules
    call_mb: float  # the most a timed call raised the peak memory (host, or the GPU's where CUDA is used)


def plan_search(
    *,
    algorithm: str = "naive",
    reward: str | Reward = "classifier",
    evaluator: str | None = "auto",
    metrics: str | Sequence[str] | None = None,
    metrics_features: str | None = None,
    metrics_features_args: dict[str, Any] | None = None,
    metrics_reference: str | Path | None = None,
    **problem_args: Any,
) -> PlannedSearch:
    """Everything `search` checks and builds before the first denoiser call (arguments as there)."""
    check_evaluator(evaluator)  # before the model loads, not after the search
    check_set_level(algorithm_class(algorithm), reward)
    if metrics is not None:
        parse_metrics(metrics)  # the names, before the model loads
    problem_keys = set(make_problem.__kwdefaults__)
    params = {k: v for k, v in problem_args.items() if k not in problem_keys}
    defaults = algorithm_class(algorithm).context_params(params, run_context(reward, problem_args))
    algo = get_algorithm(algorithm, **params, **defaults)  # checked before the model loads
    algo.check_reward(reward_factory(reward) if isinstance(reward, str) else reward)
    problem, config = make_problem(reward=reward, **{k: v for k, v in problem_args.items() if k in problem_keys})
    plan = None if metrics is None else plan_metrics(
        metrics, problem.n, metrics_features or get_backend(config["backend"]).features, metrics_reference,
        metrics_features_args, trust_model_code=problem_args.get("trust_model_code", False))
    return PlannedSearch(algo, problem, config, resolve_evaluator(evaluator, config), plan)


def run_context(reward: str | Reward, problem_args: dict[str, Any]) -> RunContext:
    """What an algorithm's run-dependent defaults see of the arguments of `make_problem`, before the model loads."""
    backend = problem_args.get("backend", "embedded")
    if problem_args.get("pipeline") is not None:
        backend = pipeline_settings(problem_args["pipeline"], backend, problem_args.get("model"),
                                    problem_args.get("denoiser"))[0]
    guidance = get_backend(backend).guidance_or_default(problem_args.get("guidance"))
    return RunContext(backend, own_model(problem_args), reward, guidance)


def own_model(problem_args: dict[str, Any]) -> bool:
    """Whether the arguments of `make_problem` bring the user's model (a path, a denoiser or a pipeline) rather
    than the backend's packaged one."""
    return any(problem_args.get(k) is not None for k in ("model", "denoiser", "pipeline"))


def resolve_evaluator(evaluator: str | None, config: dict[str, Any]) -> str | None:
    """The held-out evaluator's name: "auto" is the backend's (config from `make_problem`)."""
    check_evaluator(evaluator)
    return get_backend(config["backend"]).evaluator if evaluator == "auto" else evaluator


def search(
    *,
    algorithm: str = "naive",
    reward: str | Reward = "classifier",
    evaluator: str | None = "auto",
    **problem_args: Any,
) -> SearchResult:
    """Search the noise of one sample per condition with a registered algorithm and reward (a name, or a
    reward object: r(images, cond) -> scores).

    `problem_args` are those of `make_problem` (labels or prompts, seed or seeds, backend, model,
    pipeline (a loaded diffusers pipeline), denoiser, sampler, steps, guidance, max_batch,
    batch_invariant, nfe_budget, progress, device, dtype, compile, reward_args); any other keyword is a parameter of
    the algorithm (e.g. N=4). The held-out `evaluator` ("auto": the backend's, e.g. the MNIST evaluator on
    the embedded backend; None: none) scores the final images. `metrics` ("fid,kid,is,pr" or a subset) computes
    population metrics of the final images (the result's `metrics`) with the extractor `metrics_features`
    (default: the backend's, mnist on the embedded ones; built with `metrics_features_args`) against
    `metrics_reference` (a packaged reference's name or a file; default: the extractor's, mnist_t10k), checked
    before the search (see noisesearch.metrics.population).
    The result's config holds everything needed to rerun.
    """
    return plan_search(algorithm=algorithm, reward=reward, evaluator=evaluator, **problem_args).run()


def make_problem(
    *,
    reward: str | Reward = "classifier",
    labels: Sequence[int] | None = (0,),
    prompts: Sequence[str] | None = None,
    seed: int | None = None,
    seeds: Sequence[int] | None = None,
    backend: str = "embedded",
    model: str | None = None,
    pipeline: Any = None,
    denoiser: Denoiser | None = None,
    guidance: float | None = None,
    sampler: str | Sampler | None = None,
    steps: int | None = None,
    max_batch: int | str = DEFAULT_MAX_BATCH,
    batch_invariant: bool = False,
    nfe_budget: int | None = None,
    progress: bool | ProgressCallback = False,
    device: str = "cpu",
    dtype: str = "float32",
    compile: bool = False,
    reward_args: dict[str, Any] | None = None,
    trust_model_code: bool = False,
    trace_detail: bool = False,
    keep_candidates: bool = False,
) -> tuple[Problem, dict[str, Any]]:
    """The metered Problem that `search` runs an algorithm on, and the config entries that describe it.

    Conditions are `labels` (class indices) on label backends (the embedded MNIST model; `edm`, an
    EDM-style network whose file is `model`) and `prompts` on prompt backends (`diffusers`, `sdxl`, `sd3`,
    `flux`: `model` a local pipeline directory or cached hub id; guidance its CFG scale, FLUX.1-dev's its
    guidance embedding); `noisesearch list` shows the registered backends. A loaded diffusers `pipeline`
    (any of those families) selects its family's backend and runs on its own device and dtype; a `denoiser`
    object replaces the backend's loader. `reward` is a registered name (built with `reward_args`) or a
    reward object. Sample i uses seed
    `seed + i` (default 0) unless `seeds` lists one per condition (not both). `sampler` is a registered sampler name
    (default: the backend's) fitted to the denoiser with `steps` steps (default 18), or a Sampler (then no `steps`).
    `labels` are a list of class indices or a 1-D integer tensor or array. Flags (`batch_invariant`, `compile`,
    `trust_model_code`) take True or False only. `progress`: True for a
    progress bar, or a callback that receives ProgressEvents. `reward_args` are parsed against the reward's
    constructor (strings such as "95" become its int). Model files that need code to load (pickles, full
    modules) load only with `trust_model_code=True`. `compile=True` runs the network through torch.compile
    (backends that support it: the embedded ones; x0 within ~1e-5 of eager, not bit-identical). Calls carry at
    most `max_batch` real rows; with
    `batch_invariant=True` every call has exactly `max_batch` rows (padded), so that a condition's result is
    bit-identical whatever else shares the batch (what `bench` uses). `max_batch="auto"` sizes calls from the
    free CUDA memory (16 elsewhere; see noisesearch.batching) and is recorded as the number it chose.
    `trace_detail=True` makes the per-step searches keep every candidate's score and each searched step's x0
    prediction in their trace (what `noisesearch explore` shows; no NFE, one image per condition and step).
    `keep_candidates=True` keeps each condition's last scored candidates (Problem.candidates: what
    `noisesearch generate --keep-candidates` stores as preference pairs)."""
    check_arguments(model=model, device=device, dtype=dtype, reward_args=reward_args, progress=progress,
                    pipeline=pipeline)
    trust_model_code = check_flag(trust_model_code, "trust_model_code")
    batch_invariant = check_flag(batch_invariant, "batch_invariant")
    compile = check_flag(compile, "compile")
    model = os.fspath(model) if isinstance(model, os.PathLike) else model
    device = str(device)
    steps = check_sampler_choice(sampler, steps)
    if denoiser is not None and model is not None:
        raise NoiseSearchError("give a model path or a denoiser object, not both")
    if seed is not None and seeds is not None:
        raise NoiseSearchError("give seed (sample i uses seed + i) or seeds (one per condition), not both")
    if pipeline is not None:
        backend, model, device, dtype = pipeline_settings(pipeline, backend, model, denoiser)
    spec = get_backend(backend)
    max_batch = parse_max_batch(max_batch, fixed_for="batch-invariant mode" if batch_invariant else None)
    check_settings(DEFAULT_MAX_BATCH if max_batch == "auto" else max_batch, nfe_budget)
    cond, conditions = spec.make_conditions(labels, prompts)
    guidance = spec.guidance_or_default(guidance)
    seed_list = seeds_of(seeds, len(cond)) if seeds is not None else sample_seeds(0 if seed is None else seed,
                                                                                   len(cond))
    reward_fn, reward, reward_args = reward_of(reward, reward_args, prompts, device)
    if compile and (pipeline is not None or denoiser is not None):
        raise NoiseSearchError("compile applies to a model the backend loads; compile your own network before "
                               "passing it")
    if pipeline is not None:
        denoiser = make_denoiser(pipeline, prompts or (), guidance)
    if denoiser is None:
        denoiser = load_backend_denoiser(backend, model, guidance, prompts, device, dtype,
                                         trust_model_code=trust_model_code, compile=compile)
    check_denoiser(denoiser)
    if spec.conditions == "labels" and denoiser.label_dim is not None:
        cond = check_labels(cond, denoiser.label_dim)
    if not isinstance(sampler, (str, type(None))):
        chosen = sampler
    else:
        chosen = denoiser.default_sampler(sampler or spec.default_sampler, DEFAULT_STEPS if steps is None else steps)
    if max_batch == "auto":
        max_batch = auto_max_batch(denoiser, cond, float(chosen.sigmas[0]), device)
    callback = (TqdmProgress() if progress else None) if is_flag(progress) else progress
    problem = Problem(denoiser, reward_fn, cond, seed_list, chosen, max_batch=max_batch, nfe_budget=nfe_budget,
                      callback=callback, batch_invariant=batch_invariant, trace_detail=trace_detail,
                      keep_candidates=keep_candidates)
    return problem, conditions | {
        "backend": backend, "model": model, "reward": reward, "reward_args": reward_args,
        "seeds": seed_list, "guidance": guidance, "sampler": chosen.to_dict(), "max_batch": max_batch,
        "batch_invariant": problem.batch_invariant, "nfe_budget": nfe_budget, "device": device, "dtype": dtype,
        "compile": compile,
    }


def check_arguments(*, model: object, device: object, dtype: object, reward_args: object, progress: object,
                    pipeline: object) -> None:
    """One-line errors, before anything loads, for arguments of make_problem of the wrong type."""
    if model is not None and not isinstance(model, (str, os.PathLike)):
        raise NoiseSearchError(f"model must be a path (a str or Path) or None, got {shown(model)}")
    if not isinstance(device, (str, torch.device)):
        raise NoiseSearchError(f"device must be a string such as 'cpu' or 'cuda', got {shown(device)}")
    if pipeline is None:  # a pipeline brings its own device and dtype
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise NoiseSearchError(f"unknown dtype {shown(dtype)}: choose one of {', '.join(DTYPES)}")
        check_device(str(device))
    if reward_args is not None and not isinstance(reward_args, dict):
        raise NoiseSearchError(f"reward_args must be a dict of the reward's arguments, got {shown(reward_args)}")
    if not (is_flag(progress) or callable(progress)):
        raise NoiseSearchError(f"progress must be True, False or a callback that receives ProgressEvents, got "
                               f"{shown(progress)}")


def check_sampler_choice(sampler: object, steps: object) -> int | None:
    """`steps` checked (None: the default); a one-line error for a sampler that is neither a registered name nor a
    Sampler, or for steps given with a Sampler object (which has its own)."""
    if steps is not None:
        check_steps(steps)
    if isinstance(sampler, (str, type(None))):
        return steps
    if not isinstance(sampler, Sampler):  # the protocol's members, checked at run time
        raise NoiseSearchError(f"sampler must be a registered sampler name or a Sampler (e.g. from make_sampler), got "
                               f"{shown(sampler)}")
    if steps is not None:
        raise NoiseSearchError(f"steps applies to a sampler given by name; this Sampler has its own "
                               f"{sampler.steps} steps: leave steps out")
    return None


def seeds_of(seeds: object, n: int) -> list[int]:
    """One checked seed per condition, or a one-line error."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, torch.Tensor, np.ndarray)):
        raise NoiseSearchError(f"seeds must be a list of integers, one per condition, got {shown(seeds)}")
    seed_list = check_seeds(list(seeds))
    if len(seed_list) != n:
        raise NoiseSearchError(f"got {n} conditions but {len(seed_list)} seeds: give one seed each")
    return seed_list


def pipeline_settings(pipeline: Any, backend: str, model: str | None, denoiser: Denoiser | None
                      ) -> tuple[str, str | None, str, str]:
    """The backend, model name, device and dtype of a loaded diffusers pipeline (one-line errors for a
    pipeline given with a denoiser, or with another family's backend)."""
    if denoiser is not None:
        raise NoiseSearchError("give a pipeline or a denoiser, not both")
    family_backend = FAMILY_BACKENDS[pipeline_family(pipeline)]
    if backend not in ("embedded", family_backend):
        raise NoiseSearchError(f"a {type(pipeline).__name__} is a {family_backend} pipeline, not a {backend} one: "
                               "leave backend out")
    name = model or getattr(pipeline, "name_or_path", None) or type(pipeline).__name__
    return family_backend, name, str(pipeline.device), str(pipeline.dtype).removeprefix("torch.")


def reward_of(reward: str | Reward, reward_args: dict[str, Any] | None, prompts: Sequence[str] | None, device: str
              ) -> tuple[Reward, str, dict[str, Any]]:
    """The reward function, its name for the config and its parsed arguments: a registered reward built from
    its name, or a reward object used as it is (its `name`, or its class's)."""
    if isinstance(reward, str):
        check_search_reward(reward)
        args = parse_reward_args(reward, reward_args or {})
        return make_reward(reward, prompts, device, **args), reward, args
    if not callable(reward):
        raise NoiseSearchError(f"reward must be a registered name or a callable r(images, cond) -> scores, got "
                               f"a {type(reward).__name__}")
    if reward_args:
        raise NoiseSearchError("reward_args configure a registered reward by name; a reward object is already built")
    return reward, getattr(reward, "name", type(reward).__name__), {}
