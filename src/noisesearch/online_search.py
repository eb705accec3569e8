"""search_online(): adaptive ε-greedy over a stream of conditions, in batches, learning its search schedule from
its own searches (noisesearch.adaptive.online) — every NFE it spends makes a returned image."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from noisesearch.adaptive.online import OnlineSchedule, uniform_prior
from noisesearch.api import PlannedSearch, make_problem, own_model, resolve_evaluator
from noisesearch.backends import get_backend
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem, Reward
from noisesearch.search import get_algorithm
from noisesearch.search.local import load_schedule
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import TRACE_FIELDS, SearchResult, Trace

BatchCallback = Callable[[int, SearchResult, OnlineSchedule], None]


def prior_schedule(search_schedule: SearchSchedule | str | None, problem: Problem, config: dict[str, Any],
                   users_model: bool, reward: str | Reward) -> SearchSchedule:
    """The learner's starting point: the given schedule, else the one shipped for this model, reward and sampler,
    else the uniform prior (`uniform_prior`)."""
    plan = load_schedule(search_schedule)
    if plan is not None:
        plan.check_matches(problem.sampler)
        return plan
    from noisesearch.adaptive.shipped import shipped_schedule

    try:
        plan = SearchSchedule.load(shipped_schedule(config["backend"], users_model, reward, config["guidance"]))
        plan.check_matches(problem.sampler)
    except NoiseSearchError:
        return uniform_prior(problem.sampler)
    return plan


def search_online(
    *,
    state: str | Path,
    target_nfe: int,
    batch: int = 16,
    labels: Sequence[int] | None = (0,),
    prompts: Sequence[str] | None = None,
    seed: int = 0,
    reward: str | Reward = "classifier",
    evaluator: str | None = "auto",
    search_schedule: SearchSchedule | str | None = None,
    prior_weight: float = 4.0,
    on_batch: BatchCallback | None = None,
    **problem_args: Any,
) -> SearchResult:
    """Adaptive ε-greedy at `target_nfe` calls per image over the conditions (labels or prompts, sample i at
    seed + i), `batch` at a time: each batch runs under the schedule the learner in `state` (a JSON file,
    created if missing, updated after every batch) plans from what the earlier batches observed; its prior is
    `search_schedule`, else the shipped schedule for this model and reward, else a uniform one. Other keywords
    as for `search`; `on_batch(index, result, learner)` is called after each batch. The result's config holds
    the learner's posterior-mean schedule ("search_schedule") and how it was learned ("online")."""
    if not isinstance(batch, int) or batch < 1:
        raise NoiseSearchError(f"batch must be a positive integer, got {batch}")
    path = Path(state)
    learner = OnlineSchedule.load(path) if path.exists() else None
    if learner is not None and search_schedule is not None:
        raise NoiseSearchError(f"{path} already holds a learned schedule: its prior cannot change (drop "
                               "search_schedule, or start a new state file)")
    conditions = list(prompts if prompts is not None else labels or ())
    users_model = own_model(problem_args)
    results, loaded = [], None
    for index, start in enumerate(range(0, len(conditions), batch)):
        part = conditions[start:start + batch]
        chosen = {"prompts": part, "labels": None} if prompts is not None else {"labels": part}
        reuse = {} if loaded is None else {"denoiser": loaded, "compile": False}
        problem, config = make_problem(reward=reward, seed=seed + start, **chosen, **(problem_args | reuse))
        if problem_args.get("denoiser") is None and get_backend(config["backend"]).conditions == "labels":
            loaded = problem.denoiser  # a label model is loaded once; prompt denoisers hold their batch's prompts
        if learner is None:
            prior = prior_schedule(search_schedule, problem, config, users_model, reward)
            learner = OnlineSchedule(prior, prior_weight)
        plan = learner.plan()
        algo = get_algorithm("adaptive_eps_greedy", search_schedule=plan, target_nfe=target_nfe)
        algo.check_budget(problem)
        result = PlannedSearch(algo, problem, config, resolve_evaluator(evaluator, config)).run()
        if not isinstance(result.trace, Trace):
            raise NoiseSearchError("the online learner needs the per-step trace of adaptive_eps_greedy")
        learner.update(result.trace, plan)
        learner.save(path)
        results.append(result)
        if on_batch is not None:
            on_batch(index, result, learner)
    if not results:
        raise NoiseSearchError("search_online needs at least one label or prompt")
    return joined(results, learner, path)


def joined(results: list[SearchResult], learner: OnlineSchedule, path: Path) -> SearchResult:
    """One SearchResult for the whole stream (trace conditions renumbered in stream order)."""
    offsets = torch.tensor([0, *[len(r.nfe) for r in results]]).cumsum(0)
    traces = [r.trace for r in results]
    trace = Trace(**{name: torch.cat([getattr(t, name) + (offsets[k] if name == "condition" else 0)
                                      for k, t in enumerate(traces)])
                     for name in TRACE_FIELDS})
    first = results[0].config
    config = first | {
        "seeds": [s for r in results for s in r.config["seeds"]],
        "search_schedule": learner.plan(draw=False).to_dict(),
        "online": {"state": str(path), "batches": len(results), "batch": len(results[0].nfe),
                   "learner_batches": learner.batches, "prior_weight": learner.prior_weight},
    }
    for key in ("labels", "prompts"):
        if first.get(key) is not None:
            config[key] = [c for r in results for c in r.config[key]]
    evaluated = [r.evaluator_rewards for r in results]
    return replace(results[0], images=torch.cat([r.images for r in results]),
                   rewards=torch.cat([r.rewards for r in results]), nfe=torch.cat([r.nfe for r in results]),
                   wall_time=sum(r.wall_time for r in results), config=config, trace=trace,
                   evaluator_rewards=None if evaluated[0] is None else torch.cat(evaluated))
