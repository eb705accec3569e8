"""calibrate(): run ε-greedy on calibration conditions and fit a SearchSchedule from its traces."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from noisesearch.api import draw_labels, make_problem, search
from noisesearch.errors import NoiseSearchError
from noisesearch.sampling import EDMSchedule
from noisesearch.search.allocation import allocate_iterations, iteration_costs, marginal_gain
from noisesearch.search.calibration import fit_binomial, fit_eps, fit_final_gains, fit_gains
from noisesearch.search.gain_probe import probe_final_gains, probe_ladder
from noisesearch.search.local import check_beams
from noisesearch.search.step_schedule import SearchSchedule

CALIBRATION_SEED_BASE = 2**50  # calibration samples use seeds from here on; bench and sample seeds stay far below
METHODS = ("final", "gain", "binomial")
Move = tuple[int, float, float]  # a local-search move: (N candidates per iteration, eps, lambda_)


def calibration_seeds(seed: int, n: int) -> list[int]:
    """Sample seeds of n calibration conditions: disjoint from every evaluation seed of `sample` and `bench`."""
    return [CALIBRATION_SEED_BASE + seed * 1_000_000 + i for i in range(n)]


def expected_gain(schedule: SearchSchedule) -> float:
    """The calibrated gain of the iterations K_t a schedule buys, summed over steps (the allocator's objective)."""
    if schedule.gains is None:
        return math.nan
    return sum(marginal_gain(row, k) for row, K_t in zip(schedule.gains, schedule.K, strict=True)
               for k in range(1, K_t + 1))


def calibrate(reward: str = "classifier", conditions: int = 16, seed: int = 0, method: str = "final",
              N: int = 4, K: int = 20, eps: float = 0.4, lambda_: float = 0.15, budget: int | None = None,
              steps: int = 18, moves: Sequence[Move] = (), beams: Sequence[int] = (1,),
              validation_conditions: int | None = None, **search_args: Any) -> SearchSchedule:
    """As `calibrate_move` for the move (N, eps, lambda_). Given further `moves` (each calibrated with
    K·N/N' iterations, so that every probe spends the same calls per step) or several `beams` (numbers B
    of incumbents), every pair of a move's schedule and a B is validated: adaptive_eps_greedy runs with
    it at the budget on `validation_conditions` conditions (default: the calibration's; more are drawn
    from the same seed, the calibration's first), and the schedule of the best mean final reward is
    returned, with that B in its info. Its info lists every candidate's expected gain (the allocator's
    objective) and measured reward, and its calibration cost counts all probes and validation runs."""
    beams = check_beams(beams)
    if not moves and beams == (1,):
        return calibrate_move(reward, conditions, seed, method, N, K, eps, lambda_, budget, steps, **search_args)
    if method == "binomial":
        raise NoiseSearchError("choosing among moves or beams needs the final or gain method (binomial fits no gains)")
    tried = [calibrate_move(reward, conditions, seed, method, n, max(1, round(K * N / n)), e, lam, budget, steps,
                            **search_args) for n, e, lam in [(N, eps, lambda_), *moves]]
    budget, trajectory = tried[0].info["budget"], EDMSchedule(**tried[0].info["sampler"]).nfe_per_trajectory()
    if max(beams) * trajectory > budget:
        raise NoiseSearchError(f"B = {max(beams)} incumbents need {max(beams) * trajectory} calls per image, above "
                               f"the budget of {budget}")
    args = {k: v for k, v in search_args.items() if k != "evaluator"}
    n = conditions if validation_conditions is None else validation_conditions
    if not isinstance(n, int) or n < 1:
        raise NoiseSearchError(f"validation needs at least 1 condition, got {validation_conditions}")
    labels, seeds = draw_labels(n, seed), calibration_seeds(seed, n)
    nfe = sum(s.info["calibration_nfe"] for s in tried)
    candidates = []
    for schedule in tried:
        for B in beams:
            run = search("adaptive_eps_greedy", reward, labels=labels, seeds=seeds, steps=steps, evaluator=None,
                         search_schedule=schedule, target_nfe=budget, B=B, **args)
            nfe += int(run.nfe.sum())
            candidates.append((float(run.rewards.mean()), schedule, B))
    _, best, B = max(candidates, key=lambda c: c[0])  # the first of equals
    summary = [{key: s.info[key] for key in ("N", "K", "eps", "lambda_")} | {"B": b, "expected_gain": expected_gain(s),
                                                                           "validation_reward": r}
               for r, s, b in candidates]
    return replace(best, info=best.info | {"B": B, "candidates": summary, "validation_conditions": n,
                                           "calibration_nfe": nfe,
                                           "calibration_nfe_per_condition": nfe / conditions})


def calibrate_move(reward: str = "classifier", conditions: int = 16, seed: int = 0, method: str = "final",
                   N: int = 4, K: int = 20, eps: float = 0.4, lambda_: float = 0.15, budget: int | None = None,
                   steps: int = 18, **search_args: Any) -> SearchSchedule:
    """Fit a search schedule for `reward` on `conditions` calibration conditions (labels drawn from
    `seed`, seeds disjoint from any evaluation run).

    method "final" (the default): gains in the final reward of searching one step at a time for 1 to K
    iterations (`probe_final_gains`); "gain": gains per iteration from the x0-prediction scores of
    ε-greedy (N, K, eps) runs that search every step; with either, K_t spends `budget` calls per image (default: a third
    of ε-greedy (N, K)'s) where the gain per call is largest. "binomial": K_t = ceil(K·p(t)) (the brief).
    All fit ε_t from the improvements and keep the gains, so a budget can be given later. `search_args`
    go to `make_problem` (guidance, max_batch, progress, denoiser, ...)."""
    if method not in METHODS:
        raise NoiseSearchError(f"unknown calibration method '{method}': choose one of {', '.join(METHODS)}")
    if not isinstance(conditions, int) or conditions < 2:
        raise NoiseSearchError(f"calibration needs at least 2 conditions, got {conditions}")
    labels, seeds = draw_labels(conditions, seed), calibration_seeds(seed, conditions)
    if method == "final":
        search_args = {k: v for k, v in search_args.items() if k != "evaluator"}
        problem, config = make_problem(reward, labels, seeds=seeds, steps=steps, **search_args)
        problem.start_progress(None, "calibrate")
        try:
            probe = probe_final_gains(problem, probe_ladder(K), N, eps, lambda_)
        finally:
            problem.close_progress()
        trace, gains, nfe = probe.trace, fit_final_gains(probe, K), problem.nfe
        outcome = {"calibration_naive_reward": probe.naive_reward, "probed_k": list(probe.ks)}
    else:
        result = search("eps_greedy", reward, labels=labels, seeds=seeds, steps=steps, N=N, K=K, eps=eps,
                        lambda_=lambda_, elitism=True, **search_args)
        config, trace, nfe = result.config, result.trace, result.nfe
        gains = fit_gains(trace) if trace is not None and len(trace) else []
        outcome = {"calibration_reward": float(result.rewards.mean()),
                   **({"calibration_evaluator": float(result.evaluator_rewards.mean())}
                      if result.evaluator_rewards is not None else {})}
    schedule = EDMSchedule(**config["schedule"])  # the backend's default sampler schedule
    if trace is None or len(trace) == 0:
        raise NoiseSearchError("the calibration run searched no step (does the sampler schedule inject noise?)")
    calls = schedule.nfe_per_step_search(N * K)
    if method == "binomial":
        K_t = fit_binomial(trace, K)
    else:
        budget = math.ceil(calls / 3) if budget is None else budget
        steps_ = schedule.searchable_steps()
        first, then = iteration_costs(schedule, steps_, [N] * len(steps_))
        K_t = allocate_iterations(gains, first, then, budget - schedule.nfe_per_trajectory())
    info = {
        "method": method, "reward": reward, "conditions": conditions, "seed": seed, "N": N, "K": K, "eps": eps,
        "lambda_": lambda_, "budget": budget if method != "binomial" else None, "sampler": schedule.to_dict(),
        "calibration_nfe": int(nfe.sum()), "calibration_nfe_per_condition": float(nfe.double().mean()), **outcome,
    }
    return SearchSchedule.uniform(schedule, K_t, fit_eps(trace, eps), N,
                                  gains=tuple(tuple(row) for row in gains), info=info)
