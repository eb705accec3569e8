"""Adaptive ε-greedy: per-step effort from a calibrated search schedule, spending an optional target_nfe."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from noisesearch import cost
from noisesearch.adaptive.allocation import allocate_iterations, marginal_gain
from noisesearch.adaptive.shipped import shipped_schedule
from noisesearch.errors import BudgetExceeded, NoiseSearchError
from noisesearch.sampling import Sampler
from noisesearch.search.base import CALLS_DOC, RunContext, check_positive_int
from noisesearch.search.local import LocalSearch, load_schedule
from noisesearch.search.registry import register_algorithm
from noisesearch.search.step_schedule import SearchSchedule

if TYPE_CHECKING:
    from noisesearch.problem import Problem


def schedule_beam(schedule: SearchSchedule, target_nfe: int | None) -> int:
    """The number of incumbents a schedule was validated with (info["B"], else 1), lowered under a smaller
    target_nfe than the validation's (info["target_nfe"]) so that each incumbent keeps at least the calls it had
    there: min(B, floor(B·target_nfe / validated)), at least 1."""
    B = int(schedule.info.get("B", 1))
    validated = schedule.info.get("target_nfe")
    if target_nfe is None or not validated or B == 1:
        return B
    return max(1, min(B, B * target_nfe // validated))


@register_algorithm
@dataclass(frozen=True)
class AdaptiveEpsGreedy(LocalSearch):
    """ε-greedy under a calibrated SearchSchedule (`search_schedule`, made by `noisesearch calibrate`):
    ε_t and N_t per step from the schedule; K_t from the schedule, or — given `target_nfe` (denoiser
    calls per image, before the ×2 of classifier-free guidance) — spread over the steps by the
    schedule's expected marginal gains. Online early stopping: a step ends once its best score has not
    improved for `patience` iterations, or when the expected gain of another iteration is not above
    `min_gain`; with `target_nfe`, calls a condition saves are re-spent on its later steps, and it is
    never exceeded. The local-draw radius `lambda_` and the number B of incumbents default to the ones
    the schedule was calibrated or validated with (its info["lambda_"] and info["B"], else 0.15 and 1);
    see `schedule_beam` for B under another target_nfe."""

    name = "adaptive_eps_greedy"
    source = ("ours: ε-greedy of Ramesh and Mardani, *Test-Time Scaling of Diffusion Models via Noise Trajectory "
              "Search* ([arXiv 2506.03164](https://arxiv.org/abs/2506.03164)) under a schedule calibrated for the "
              "reward and budget (Fig. 2's k̄(σ) made a plan)")
    family = "adaptive"
    nfe_doc = (f"at most `target_nfe`; without one, B·Σ over steps: N_t·K_t + c_i − 1 at searchable steps, c_i "
               f"elsewhere, {CALLS_DOC}")
    search_schedule: SearchSchedule | str | None = None
    target_nfe: int | None = None
    patience: int | None = None
    min_gain: float = 0.0
    lambda_: float | None = None  # type: ignore[assignment]
    B: int | None = None  # type: ignore[assignment]

    @classmethod
    def context_params(cls, params: dict[str, Any], context: RunContext) -> dict[str, Any]:
        """Without a search_schedule, the one shipped for this backend's packaged model, reward and guidance (a
        one-line error where none is shipped)."""
        if params.get("search_schedule") is not None:
            return {}
        return {"search_schedule": str(shipped_schedule(context.backend, context.own_model, context.reward,
                                                        context.guidance))}

    def __post_init__(self) -> None:
        schedule = load_schedule(self.search_schedule)
        if schedule is None:
            raise NoiseSearchError("adaptive_eps_greedy needs a search schedule: make one with "
                                   "`noisesearch calibrate --reward R --out schedule.json` and pass its path")
        object.__setattr__(self, "search_schedule", schedule)
        if self.lambda_ is None:
            object.__setattr__(self, "lambda_", float(schedule.info.get("lambda_", LocalSearch.lambda_)))
        if self.B is None:
            object.__setattr__(self, "B", schedule_beam(schedule, self.target_nfe))
        super().__post_init__()
        if self.target_nfe is not None:
            check_positive_int(target_nfe=self.target_nfe)
            if schedule.gains is None:
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

    def schedule_for(self, sampler: Sampler) -> SearchSchedule:
        schedule = self.search_schedule
        if schedule.gains is None or self.target_nfe is not None:
            return schedule
        K = [next((j - 1 for j in range(1, k + 1) if marginal_gain(row, j) <= self.min_gain), k)
             for k, row in zip(schedule.K, schedule.gains, strict=True)]
        return schedule.with_K(K)

    def nfe_formula(self, sampler: Sampler) -> int | None:
        if self.target_nfe is not None or self.patience is not None:
            return None
        return super().nfe_formula(sampler)

    def nfe_estimate(self, sampler: Sampler) -> int:
        return self.target_nfe if self.target_nfe is not None else super().nfe_formula(sampler)

    def check_budget(self, problem: Problem) -> None:
        """With target_nfe (the calls per image it may spend; its formula says nothing), the hard NFE budget it
        must fit under, before any call."""
        super().check_budget(problem)
        if self.target_nfe is None or problem.nfe_budget is None:
            return
        need = int(problem.nfe.max()) + cost.nfe(self.target_nfe, problem.denoiser)
        if need > problem.nfe_budget:
            raise BudgetExceeded(f"{self.name} may spend {need} NFE per image (target_nfe {self.target_nfe}), over "
                                 f"the hard budget of {problem.nfe_budget}: lower target_nfe or raise the budget")

    def _iterations(self, sampler: Sampler, schedule: SearchSchedule, t: int,
                    extra_calls: torch.Tensor) -> torch.Tensor:
        """With a budget: per condition, the first entry of the allocation of its remaining budget over
        steps t, t+1, ... (so calls saved by early stopping are re-spent later)."""
        if self.target_nfe is None:
            return super()._iterations(sampler, schedule, t, extra_calls)
        first, then = cost.iteration_costs(sampler, schedule.steps[t:], schedule.N[t:], self.score_with == "step")
        first, then = [self.B * c for c in first], [self.B * c for c in then]
        trajectories = self.B * cost.trajectory_calls(sampler)
        left = self.target_nfe - trajectories
        if left < 0:
            raise NoiseSearchError(f"target_nfe {self.target_nfe} is below B = {self.B} plain sampler trajectories "
                                   f"({trajectories} calls)")
        K = {spent: allocate_iterations(schedule.gains[t:], first, then, left - spent, self.min_gain)[0]
             for spent in set(extra_calls.tolist())}
        return torch.tensor([K[spent] for spent in extra_calls.tolist()])
