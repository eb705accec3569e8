"""ε-greedy with per-step effort: the brief's σ window (J.1) and the calibrated, budgeted adaptive search."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.sampling import EDMSchedule
from noisesearch.search.allocation import allocate_iterations, iteration_costs, marginal_gain
from noisesearch.search.local import LocalSearch, check_positive_int, load_schedule
from noisesearch.search.registry import register_algorithm
from noisesearch.search.step_schedule import SearchSchedule


@register_algorithm
@dataclass(frozen=True)
class EpsGreedyWindow(LocalSearch):
    """ε-greedy with K_in iterations at the searchable steps with sigma_lo <= σ_i <= sigma_hi and K_out
    elsewhere (the brief's J.1 proof of concept: K = 20 inside 0.01 <= σ <= 1, K = 1 outside)."""

    name = "eps_greedy_window"
    nfe_doc = "Σ over steps: N·K_t + 1 at searchable steps (K_t = K_in inside the window, K_out outside), 2 elsewhere"
    N: int = 4
    eps: float = 0.4
    sigma_lo: float = 0.01
    sigma_hi: float = 1.0
    K_in: int = 20
    K_out: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(N=self.N, K_in=self.K_in)
        if not isinstance(self.K_out, int) or self.K_out < 0:
            raise NoiseSearchError(f"K_out must be an integer >= 0, got {self.K_out}")
        if not 0 <= self.sigma_lo <= self.sigma_hi:
            raise NoiseSearchError(f"need 0 <= sigma_lo <= sigma_hi, got {self.sigma_lo} and {self.sigma_hi}")
        if not 0 <= self.eps <= 1:
            raise NoiseSearchError(f"eps must lie in [0, 1], got {self.eps}")

    def plan_for(self, schedule: EDMSchedule) -> SearchSchedule:
        sigmas = schedule.sigmas()
        K = [self.K_in if self.sigma_lo <= float(sigmas[i]) <= self.sigma_hi else self.K_out
             for i in schedule.searchable_steps()]
        return SearchSchedule.uniform(schedule, K, self.eps, self.N)


def schedule_beam(plan: SearchSchedule, target_nfe: int | None) -> int:
    """The number of incumbents a schedule was validated with (info["B"], else 1), lowered under a smaller
    budget than the validation's (info["budget"]) so that each incumbent keeps at least the calls it had
    there: min(B, floor(B·target_nfe / budget)), at least 1."""
    B = int(plan.info.get("B", 1))
    budget = plan.info.get("budget")
    if target_nfe is None or not budget or B == 1:
        return B
    return max(1, min(B, B * target_nfe // budget))


@register_algorithm
@dataclass(frozen=True)
class AdaptiveEpsGreedy(LocalSearch):
    """ε-greedy under a calibrated SearchSchedule (`search_schedule`, made by `noisesearch calibrate`):
    ε_t and N_t per step from the schedule; K_t from the schedule, or — given `target_nfe` (denoiser
    calls per image, before the ×2 of classifier-free guidance) — spread over the steps by the
    schedule's expected marginal gains. Online early stopping: a step ends once its best score has not
    improved for `patience` iterations, or when the expected gain of another iteration is not above
    `min_gain`; with a budget, calls a condition saves are re-spent on its later steps. The budget is
    never exceeded. The local-draw radius `lambda_` and the number B of incumbents default to the ones
    the schedule was calibrated or validated with (its info["lambda_"] and info["B"], else 0.15 and 1);
    see `schedule_beam` for B under another budget."""

    name = "adaptive_eps_greedy"
    nfe_doc = "at most `target_nfe`; without one, Σ over steps: N_t·K_t + 1 at searchable steps, 2 elsewhere"
    search_schedule: SearchSchedule | str | None = None
    target_nfe: int | None = None
    patience: int | None = None
    min_gain: float = 0.0
    lambda_: float | None = None  # type: ignore[assignment]
    B: int | None = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        plan = load_schedule(self.search_schedule)
        if plan is None:
            raise NoiseSearchError("adaptive_eps_greedy needs a search schedule: make one with "
                                   "`noisesearch calibrate --reward R --out schedule.json` and pass its path")
        object.__setattr__(self, "search_schedule", plan)
        if self.lambda_ is None:
            object.__setattr__(self, "lambda_", float(plan.info.get("lambda_", LocalSearch.lambda_)))
        if self.B is None:
            object.__setattr__(self, "B", schedule_beam(plan, self.target_nfe))
        super().__post_init__()
        if self.target_nfe is not None:
            check_positive_int(target_nfe=self.target_nfe)
            if plan.gains is None:
                raise NoiseSearchError("target_nfe needs a schedule with calibrated gains (made by `noisesearch "
                                       "calibrate --method gain` or `--method final`)")
        if self.patience is not None:
            check_positive_int(patience=self.patience)
        if not math.isfinite(self.min_gain):
            raise NoiseSearchError(f"min_gain must be a finite number, got {self.min_gain}")

    def params(self) -> dict:
        return {**super().params(), "search_schedule": self.search_schedule.to_dict()}

    @property
    def stop_patience(self) -> int | None:
        return self.patience

    def plan_for(self, schedule: EDMSchedule) -> SearchSchedule:
        plan = self.search_schedule
        if plan.gains is None or self.target_nfe is not None:
            return plan
        K = [next((j - 1 for j in range(1, k + 1) if marginal_gain(row, j) <= self.min_gain), k)
             for k, row in zip(plan.K, plan.gains, strict=True)]
        return plan.with_K(K)

    def nfe_formula(self, schedule: EDMSchedule) -> int | None:
        if self.target_nfe is not None or self.patience is not None:
            return None
        return super().nfe_formula(schedule)

    def nfe_estimate(self, schedule: EDMSchedule) -> int:
        return self.target_nfe if self.target_nfe is not None else super().nfe_formula(schedule)

    def _iterations(self, schedule: EDMSchedule, plan: SearchSchedule, t: int,
                    extra_calls: torch.Tensor) -> torch.Tensor:
        """With a budget: per condition, the first entry of the allocation of its remaining budget over
        steps t, t+1, ... (so calls saved by early stopping are re-spent later)."""
        if self.target_nfe is None:
            return super()._iterations(schedule, plan, t, extra_calls)
        first, then = iteration_costs(schedule, plan.steps[t:], plan.N[t:], self.score_with == "step")
        first, then = [self.B * c for c in first], [self.B * c for c in then]
        left = self.target_nfe - self.B * schedule.nfe_per_trajectory()
        if left < 0:
            raise NoiseSearchError(f"target_nfe {self.target_nfe} is below B = {self.B} plain sampler trajectories "
                                   f"({self.B * schedule.nfe_per_trajectory()} calls)")
        K = {spent: allocate_iterations(plan.gains[t:], first, then, left - spent, self.min_gain)[0]
             for spent in set(extra_calls.tolist())}
        return torch.tensor([K[spent] for spent in extra_calls.tolist()])
