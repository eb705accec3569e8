"""online_adaptive_eps_greedy: adaptive ε-greedy that learns its search schedule while it works, part by part
over a Problem's conditions (the learner: noisesearch.adaptive.online)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from noisesearch.adaptive.algorithm import AdaptiveEpsGreedy
from noisesearch.adaptive.online import CREDITS, OnlineSchedule, uniform_prior
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.sampling import Sampler
from noisesearch.search.base import SearchAlgorithm, check_positive_int
from noisesearch.search.local import load_schedule
from noisesearch.search.registry import register_algorithm
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import TRACE_FIELDS, SearchResult, Trace

BatchHook = Callable[[int, OnlineSchedule], None]


def concatenated(traces: list[Trace], parts: list[torch.Tensor]) -> Trace:
    """One trace from the traces of Problem parts, each part's conditions renumbered to its indices `parts[k]`."""
    return Trace(**{name: torch.cat([parts[k][t.condition] if name == "condition" else getattr(t, name)
                                     for k, t in enumerate(traces)])
                    for name in TRACE_FIELDS})


@register_algorithm
@dataclass(frozen=True)
class OnlineAdaptiveEpsGreedy(SearchAlgorithm):
    """Adaptive ε-greedy with no separate calibration: the conditions are searched in order, `stream_batch` at a
    time, each part under the schedule the online learner plans (a Thompson draw of its per-step gain curves,
    K_t spread over `target_nfe` calls per image) from the traces of the parts before it; the first part runs
    under the prior `search_schedule` (default: a uniform one, ε-greedy (4, 0.4) with gains 1/k); `credit` says
    how much of a step's observed gain counts (see noisesearch.adaptive.online). Every NFE
    makes a returned image. A condition's result depends on it and the conditions before it only (a prefix of
    the conditions gives the same images); `continuing` carries a learner over from earlier runs."""

    name = "online_adaptive_eps_greedy"
    nfe_doc = "at most `target_nfe` (as adaptive_eps_greedy under the learned schedule of each part)"
    searches_step_noise = True
    learns_across_conditions = True
    target_nfe: int | None = None
    search_schedule: SearchSchedule | str | None = None
    stream_batch: int = 16
    prior_weight: float = 4.0
    credit: str = "x0"
    learner: OnlineSchedule | None = field(default=None, init=False, repr=False, compare=False)
    on_batch: BatchHook | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.target_nfe is None:
            raise NoiseSearchError("online_adaptive_eps_greedy needs target_nfe, the denoiser calls per image")
        check_positive_int(target_nfe=self.target_nfe, stream_batch=self.stream_batch)
        object.__setattr__(self, "search_schedule", load_schedule(self.search_schedule))
        if self.search_schedule is not None:
            OnlineSchedule(self.search_schedule, self.prior_weight)  # a prior without gains fails here
        if self.credit not in CREDITS:
            raise NoiseSearchError(f"credit must be one of {', '.join(CREDITS)}, got {self.credit!r}")

    def continuing(self, learner: OnlineSchedule, on_batch: BatchHook | None = None) -> OnlineAdaptiveEpsGreedy:
        """This search, learning on from `learner` (its prior replaces search_schedule; updated in place after
        every part, after which `on_batch(part index, learner)` is called)."""
        if self.search_schedule is not None:
            raise NoiseSearchError("a continued learner keeps its own prior: drop search_schedule")
        algo = replace(self)
        object.__setattr__(algo, "learner", learner)
        object.__setattr__(algo, "on_batch", on_batch)
        return algo

    def params(self) -> dict[str, Any]:
        plan = self.search_schedule
        return {"target_nfe": self.target_nfe, "stream_batch": self.stream_batch, "prior_weight": self.prior_weight,
                "credit": self.credit, "search_schedule": None if plan is None else plan.to_dict()}

    def prior_for(self, sampler: Sampler) -> SearchSchedule:
        if self.learner is not None:
            return self.learner.prior
        return self.search_schedule if self.search_schedule is not None else uniform_prior(sampler)

    def inner(self, plan: SearchSchedule) -> AdaptiveEpsGreedy:
        return AdaptiveEpsGreedy(search_schedule=plan, target_nfe=self.target_nfe)

    def nfe_formula(self, sampler: Sampler) -> int | None:
        return None

    def nfe_estimate(self, sampler: Sampler) -> int:
        return self.target_nfe

    def expected_calls(self, sampler: Sampler, result: SearchResult) -> torch.Tensor:
        """N_t and B are the prior's in every part, so the trace's iterations cost as under the prior."""
        return self.inner(self.prior_for(sampler)).expected_calls(sampler, result)

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace]:
        prior = self.prior_for(problem.sampler)
        prior.check_matches(problem.sampler)
        learner = (self.learner if self.learner is not None
                   else OnlineSchedule(prior, self.prior_weight, credit=self.credit))
        states, rewards, traces, parts = [], [], [], []
        for index, start in enumerate(range(0, problem.n, self.stream_batch)):
            part = torch.arange(start, min(start + self.stream_batch, problem.n))
            plan = learner.plan()
            with problem.part(part) as sub:
                x, r, trace = self.inner(plan)._search(sub)
            learner.update(trace, plan, r.double().numpy())
            states.append(x)
            rewards.append(r)
            traces.append(trace)
            parts.append(part)
            if self.on_batch is not None:
                self.on_batch(index, learner)
        return torch.cat(states), torch.cat(rewards), concatenated(traces, parts)
