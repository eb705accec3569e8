"""calibrate(): probe ε-greedy on calibration conditions and fit a SearchSchedule from what it observed."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from noisesearch import cost
from noisesearch.adaptive.allocation import allocate_iterations, expected_gain
from noisesearch.adaptive.config import CalibrationConfig
from noisesearch.adaptive.fits import fit_binomial, fit_eps, fit_final_gains, fit_gains
from noisesearch.adaptive.gain_probe import probe_final_gains, probe_ladder
from noisesearch.adaptive.reliability import CANDIDATES, probe_reliability, reliability_gains
from noisesearch.api import make_problem, plan_search, search
from noisesearch.errors import NoiseSearchError
from noisesearch.rewards.registry import check_point_wise, check_search_reward, check_step_reward
from noisesearch.sampling import Sampler, sampler_from_dict
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.seeds import calibration_seeds, draw_labels

if TYPE_CHECKING:
    from noisesearch.executors import Executor


def calibrate(reward: str = "classifier", config: CalibrationConfig | None = None, executor: Executor | None = None,
              **problem_args: Any) -> SearchSchedule:
    """A search schedule for `reward`, calibrated as `config` says (default: CalibrationConfig(), the recipe of
    the shipped schedules, as `noisesearch calibrate` runs it) on its calibration conditions (labels
    drawn from config.seed, sample seeds disjoint from any evaluation run); `problem_args` go to
    `make_problem` (steps, sampler, guidance, max_batch, progress, backend, denoiser, ...).

    With further moves or several beams, every pair of a move's schedule and a B is validated:
    adaptive_eps_greedy runs with it at the budget on the validation conditions (the calibration's first,
    and more drawn from the same seed), and the schedule of the best mean final reward is returned, with
    that B in its info; with validation_conditions = 0, the move of the largest expected gain, with B = 1.
    Its info lists every candidate's expected gain (the allocator's objective) and
    measured reward, and its calibration cost counts all probes and validation runs.

    With an `executor` (see noisesearch.executors), each move's probe and each validation run is
    one of its tasks (`problem_args` must then be picklable); the schedule is the one calibrated without."""
    config = CalibrationConfig() if config is None else config
    if isinstance(reward, str):
        check_search_reward(reward)  # here too: an executor's workers would find it only after their model loads
    check_step_reward(reward, "calibration")
    check_point_wise(reward, "calibrate")  # its probes score many conditions' candidates together
    if not config.validates:
        return run_all(executor, calibrate_move_task, [(reward, config, None)], problem_args, "the calibration")[0]
    moves = [(config.N, config.eps, config.lambda_), *config.moves]
    tried = run_all(executor, calibrate_move_task,
                    [(reward, replace(config, N=n, K=max(1, round(config.K * config.N / n)), eps=e, lambda_=lam),
                      config) for n, e, lam in moves], problem_args, "the calibration of move")
    if config.validation_conditions == 0:
        best = max(tried, key=expected_gain)  # the first of equals
        summary = [candidate_summary(s, 1) for s in tried]
        nfe = sum(s.info["calibration_nfe"] for s in tried)
        return replace(best, info=best.info | {"B": 1, "candidates": summary, "validation_conditions": 0,
                                               "calibration_nfe": nfe,
                                               "calibration_nfe_per_condition": nfe / config.conditions})
    budget = tried[0].info["target_nfe"]  # each move checked before its probe that it affords max(beams) trajectories
    args = {k: v for k, v in problem_args.items() if k != "evaluator"}
    n = config.conditions if config.validation_conditions is None else config.validation_conditions
    labels, seeds = draw_labels(n, config.seed), calibration_seeds(config.seed, n)
    pairs = [(schedule, B) for schedule in tried for B in config.beams]
    runs = run_all(executor, validation_task, [(reward, labels, seeds, schedule, budget, B) for schedule, B in pairs],
                   args, "validation run")
    nfe = sum(s.info["calibration_nfe"] for s in tried) + sum(spent for _, spent in runs)
    candidates = [(mean, schedule, B) for (mean, _), (schedule, B) in zip(runs, pairs, strict=True)]
    _, best, B = max(candidates, key=lambda c: c[0])  # the first of equals
    summary = [candidate_summary(s, b) | {"validation_reward": r} for r, s, b in candidates]
    return replace(best, info=best.info | {"B": B, "candidates": summary, "validation_conditions": n,
                                           "calibration_nfe": nfe,
                                           "calibration_nfe_per_condition": nfe / config.conditions})


def candidate_summary(schedule: SearchSchedule, B: int) -> dict[str, Any]:
    """A calibrated (move, B) candidate as the kept schedule's info lists it."""
    return {key: schedule.info[key] for key in ("N", "K", "eps", "lambda_")} | {"B": B,
                                                                           "expected_gain": expected_gain(schedule)}


def run_all(executor: Executor | None, fn: Callable[[tuple], Any], tasks: Sequence[tuple], problem_args: dict[str, Any],
            what: str) -> list[Any]:
    """fn((*task, problem_args)) for every task, in this process or as the executor's tasks (where their
    progress cannot reach this process, without progress bars)."""
    if executor is not None and not executor.reports_progress:
        problem_args = {**problem_args, "progress": False}
    tasks = [(*task, problem_args) for task in tasks]
    if executor is None:
        return [fn(task) for task in tasks]
    return executor.run_all(fn, tasks, what)


def calibrate_move_task(task: tuple[str, CalibrationConfig, CalibrationConfig | None, dict[str, Any]]
                        ) -> SearchSchedule:
    reward, config, validated, problem_args = task
    return calibrate_move(reward, config, validated, **problem_args)


def validation_task(task: tuple[str, list[int], list[int], SearchSchedule, int, int, dict[str, Any]]
                    ) -> tuple[float, int]:
    """The mean final reward and the NFE of adaptive_eps_greedy with a candidate schedule and B."""
    reward, labels, seeds, schedule, budget, B, problem_args = task
    run = search(algorithm="adaptive_eps_greedy", reward=reward, labels=labels, seeds=seeds, evaluator=None,
                 search_schedule=schedule, target_nfe=budget, B=B, **problem_args)
    return float(run.rewards.mean()), int(run.nfe.sum())


def calibrate_move(reward: str, config: CalibrationConfig, validated: CalibrationConfig | None = None,
                   **problem_args: Any) -> SearchSchedule:
    """A search schedule for config's one move (N, eps, lambda_) by config's method.

    "final": gains in the final reward of searching one step at a time for 1 to K iterations
    (`probe_final_gains`); "gain": gains per iteration from the x0-prediction scores of ε-greedy (N, K,
    eps) runs that search every step; with either, K_t spends config.target_nfe calls per image (default:
    a third of ε-greedy (N, K)'s) where the gain per call is largest. "binomial": K_t = ceil(K·p(t)). These
    fit ε_t from the improvements; "reliability" takes gains and ε_t from R(σ) (`reliability_gains`) and
    spends the budget as "final" does. All keep the gains, so a budget can be given later.

    Before the probe, a budget short of one plain trajectory is a one-line NoiseSearchError, as is one that
    cannot hold max(beams) trajectories where `validated` (the config of a calibration that validates its
    candidates at its first move's budget) says so."""
    c = config
    labels, seeds = draw_labels(c.conditions, c.seed), calibration_seeds(c.seed, c.conditions)
    args = {k: v for k, v in problem_args.items() if k != "evaluator"}
    eps = None
    if c.method == "reliability":
        problem, _ = make_problem(reward=reward, labels=labels, seeds=seeds, **args)
        check_step_reward(problem.reward, "calibration")  # the built reward: a remote one declares x0_sigma only now
        check_move_budget(c, problem.sampler, validated)
        curve = probe_reliability(problem, CANDIDATES)
        sampler, trace, nfe = problem.sampler, None, problem.nfe
        gains, eps = reliability_gains(curve, c.K, c.N)
        outcome = {"reliability": curve.to_dict()["steps"], "reliability_candidates": CANDIDATES}
    elif c.method == "final":
        problem, _ = make_problem(reward=reward, labels=labels, seeds=seeds, **args)
        check_step_reward(problem.reward, "calibration")
        check_move_budget(c, problem.sampler, validated)
        problem.start_progress(None, "calibrate")
        try:
            probe = probe_final_gains(problem, probe_ladder(c.K), c.N, c.eps, c.lambda_)
        finally:
            problem.close_progress()
        sampler, trace, gains, nfe = problem.sampler, probe.trace, fit_final_gains(probe, c.K), problem.nfe
        outcome = {"calibration_naive_reward": probe.naive_reward, "probed_k": list(probe.ks)}
    else:
        planned = plan_search(algorithm="eps_greedy", reward=reward, labels=labels, seeds=seeds, N=c.N, K=c.K,
                              eps=c.eps, lambda_=c.lambda_, elitism=True, **problem_args)
        check_move_budget(c, planned.problem.sampler, validated)
        result = planned.run()  # as search() runs it
        sampler, trace, nfe = sampler_from_dict(result.config["sampler"]), result.trace, result.nfe
        gains = fit_gains(trace) if trace is not None and len(trace) else []
        outcome = {"calibration_reward": float(result.rewards.mean()),
                   **({"calibration_evaluator": float(result.evaluator_rewards.mean())}
                      if result.evaluator_rewards is not None else {})}
    if not gains if eps is not None else trace is None or len(trace) == 0:
        raise NoiseSearchError("the calibration run searched no step (does the sampler inject noise?)")
    budget = None
    if c.method == "binomial":
        K_t = fit_binomial(trace, c.K)
    else:
        budget = move_budget(c, sampler)
        steps = sampler.searchable_steps()
        first, then = cost.iteration_costs(sampler, steps, [c.N] * len(steps))
        K_t = allocate_iterations(gains, first, then, budget - cost.trajectory_calls(sampler))
    info = {
        "method": c.method, "reward": reward, "conditions": c.conditions, "seed": c.seed, "N": c.N, "K": c.K,
        "eps": c.eps, "lambda_": c.lambda_, "target_nfe": budget, "sampler": sampler.to_dict(),
        "calibration_nfe": int(nfe.sum()), "calibration_nfe_per_condition": float(nfe.double().mean()), **outcome,
    }
    return SearchSchedule.uniform(sampler, K_t, fit_eps(trace, c.eps) if eps is None else eps, c.N,
                                  gains=tuple(tuple(row) for row in gains), info=info)


def move_budget(config: CalibrationConfig, sampler: Sampler) -> int:
    """Calls per image a move's schedule spends: config.target_nfe, by default a third of ε-greedy (N, K)'s."""
    if config.target_nfe is not None:
        return config.target_nfe
    return math.ceil(cost.per_step_search_calls(sampler, config.N * config.K) / 3)


def check_move_budget(config: CalibrationConfig, sampler: Sampler, validated: CalibrationConfig | None) -> None:
    """Before a move's probe: its budget affords one plain trajectory (the binomial method spends none), and
    where its calibration validates candidates (`validated`), the budget of the validation runs (the first
    move's) affords max(beams) incumbents' trajectories; a one-line NoiseSearchError otherwise."""
    if config.method == "binomial":
        return
    budget, trajectory = move_budget(config, sampler), cost.trajectory_calls(sampler)
    if trajectory > budget:
        default = ("" if config.target_nfe is not None else
                   f" (the default: a third of the {cost.per_step_search_calls(sampler, config.N * config.K)} calls "
                   f"of eps-greedy N={config.N}, K={config.K})")
        raise NoiseSearchError(f"the calibration budget of {budget} calls per image{default} is below one plain "
                               f"sampler trajectory ({trajectory} calls): give a target_nfe (--target-nfe) of at "
                               f"least {trajectory}")
    if validated is not None and validated.validates and validated.validation_conditions != 0:
        B, first = max(validated.beams), move_budget(validated, sampler)
        if B * trajectory > first:
            raise NoiseSearchError(f"B = {B} incumbents need {B * trajectory} calls per image, above the budget "
                                   f"of {first}")


def calibration_summary(schedule: SearchSchedule) -> str:
    """What a calibration tried, kept and cost, and the calls per image its schedule plans, one line each."""
    info = schedule.info
    lines = []
    for c in info.get("candidates", []):
        validated = f", validation reward {c['validation_reward']:.4f}" if "validation_reward" in c else ""
        lines.append(f"candidate N={c['N']} K={c['K']} eps={c['eps']} lambda={c['lambda_']} B={c['B']}: expected "
                     f"gain {c['expected_gain']:.4f}{validated}")
    if "candidates" in info:
        lines.append(f"kept N={info['N']} eps={info['eps']} lambda={info['lambda_']} B={info['B']}")
    lines.append(f"calibrated on {info['conditions']} conditions at {info['calibration_nfe_per_condition']:.0f} NFE "
                 f"each ({info['calibration_nfe']} NFE in all); schedule: "
                 f"{cost.schedule_calls(sampler_from_dict(info['sampler']), schedule)} calls per image")
    return "\n".join(lines)
