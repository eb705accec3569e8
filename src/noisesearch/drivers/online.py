"""search_online(): online_adaptive_eps_greedy over a stream of conditions, its learner kept in a state file
between runs (noisesearch.adaptive.online) — every NFE it spends makes a returned image."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any

from noisesearch.adaptive.config import Move
from noisesearch.adaptive.online_algorithm import BatchHook
from noisesearch.adaptive.portfolio import Portfolio, state_settings
from noisesearch.adaptive.shipped import shipped_schedule
from noisesearch.api import PlannedSearch, make_problem, own_model, resolve_evaluator
from noisesearch.errors import NoiseSearchError
from noisesearch.files import exclusive_lock
from noisesearch.problem import Problem, Reward
from noisesearch.rewards.registry import check_point_wise
from noisesearch.search import get_algorithm
from noisesearch.search.local import load_schedule
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import SearchResult


def prior_schedule(search_schedule: SearchSchedule | str | None, problem: Problem, config: dict[str, Any],
                   users_model: bool, reward: str | Reward) -> SearchSchedule | None:
    """The learner's starting point: the given schedule (checked with the learner), else the one shipped for this
    model, reward and sampler, else None (the uniform arms of `online_adaptive_eps_greedy`)."""
    schedule = load_schedule(search_schedule)
    if schedule is not None:
        return schedule
    try:
        schedule = SearchSchedule.load(shipped_schedule(config["backend"], users_model, reward, config["guidance"]))
        schedule.check_matches(problem.sampler)
    except NoiseSearchError:
        return None
    return schedule


def check_state_path(path: Path) -> None:
    """A one-line error unless `path` can be a state file: not a directory, in a directory that exists."""
    if path.is_dir():
        raise NoiseSearchError(f"online state {path} is a directory: give the path of a state file (JSON)")
    if not path.parent.is_dir():
        raise NoiseSearchError(f"online state {path}: directory {path.parent} does not exist; create it first")


def state_lock(path: Path) -> AbstractContextManager[None]:
    """Hold the lock of state file `path` (the file `path`.lock beside it, removed afterwards), or a one-line
    error if another run holds it."""
    return exclusive_lock(path.with_name(path.name + ".lock"),
                          f"another run is learning in online state {path}: let it finish, or use another state "
                          "file", remove=True)


def search_online(
    *,
    state: str | Path,
    target_nfe: int,
    batch: int = 16,
    reward: str | Reward = "classifier",
    evaluator: str | None = "auto",
    search_schedule: SearchSchedule | str | None = None,
    prior_weight: float = 4.0,
    credit: str = "x0",
    moves: tuple[Move, ...] | None = None,
    beams: tuple[int, ...] | None = None,
    windows: tuple[str, ...] | None = None,
    learn_steps: bool = False,
    on_batch: BatchHook | None = None,
    **problem_args: Any,
) -> SearchResult:
    """`online_adaptive_eps_greedy` at `target_nfe` calls per image over the conditions (labels or prompts, sample
    i at seed + i), `batch` at a time, continuing the learner in `state` (a JSON file, created if missing and
    saved after every batch); a new learner's one arm is `search_schedule`, else the shipped schedule for this
    model and reward; given `moves`, `beams` or `windows`, or without either schedule, it chooses among those
    uniform arms (noisesearch.adaptive.portfolio). `learn_steps` as for `online_adaptive_eps_greedy`. Other
    keywords as for `search`; `on_batch(index, learner)` is called after each batch. The state is locked while
    the search runs (a second run on it is refused in one line), checked field by field before any compute, and
    bound to the reward, reward_args, guidance, model, backend and sampler that made it (another run's are
    refused; a state written before format 2 adopts those of its first run). The result's config holds
    the schedule the best arm so far plans with ("search_schedule": its prior, or with `learn_steps` its
    posterior-mean schedule), each condition's arm ("arms") and how it was learned ("online", with every arm's
    record)."""
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise NoiseSearchError(f"batch must be a positive integer, got {batch}")
    check_point_wise(reward, "online search")  # its learner shares what it learns within a batch of conditions
    path = Path(state)
    check_state_path(path)
    search_schedule = load_schedule(search_schedule)
    with state_lock(path):
        learner = Portfolio.load(path) if path.exists() else None
        arms = {"moves": moves, "beams": beams, "windows": windows}
        chosen = [name for name, value in arms.items() if value is not None]
        if learner is not None and (search_schedule is not None or chosen):
            raise NoiseSearchError(f"{path} already holds a learned schedule: its arms cannot change (drop "
                                   f"{', '.join(chosen or ['search_schedule'])}, or start a new state file)")
        algo = get_algorithm("online_adaptive_eps_greedy", target_nfe=target_nfe, stream_batch=batch,
                             prior_weight=prior_weight, credit=credit, learn_steps=learn_steps)
        problem, config = make_problem(reward=reward, **problem_args)
        if learner is None:
            # checks the arms, and that they exclude search_schedule
            fresh = get_algorithm("online_adaptive_eps_greedy", target_nfe=target_nfe,
                                  search_schedule=search_schedule, **arms)
            prior = None if chosen else prior_schedule(search_schedule, problem, config, own_model(problem_args),
                                                       reward)
            learner = fresh.new_learner(problem.sampler, None if prior is None else [prior])
        else:
            try:
                learner.bind(state_settings(config))
                for arm in learner.learners:
                    arm.prior.check_matches(problem.sampler)
            except NoiseSearchError as err:
                raise NoiseSearchError(f"online state {path}: {err}") from None
        learner.settings = learner.settings or state_settings(config)

        def saved(index: int, learned: Portfolio) -> None:
            learned.save(path)
            if on_batch is not None:
                on_batch(index, learned)

        result = PlannedSearch(algo.continuing(learner, saved), problem, config,
                               resolve_evaluator(evaluator, config)).run()
    best = learner.best()
    online = {"state": str(path), "batches": -(-problem.n // batch), "batch": batch,
              "learner_batches": learner.batches, "prior_weight": learner.learners[best].prior_weight,
              "learn_steps": learn_steps, "arms": learner.summary()}
    schedule = learner.arm_schedule(best, learn_steps, draw=False)
    return replace(result, config=result.config | {"search_schedule": schedule.to_dict(), "online": online})
