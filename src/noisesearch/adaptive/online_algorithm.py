"""online_adaptive_eps_greedy: adaptive ε-greedy that learns its search schedule while it works, part by part
over a Problem's conditions (the learner: noisesearch.adaptive.online)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from noisesearch.adaptive.algorithm import AdaptiveEpsGreedy
from noisesearch.adaptive.config import CalibrationConfig, Move
from noisesearch.adaptive.online import CREDITS, OnlineSchedule, check_windows
from noisesearch.adaptive.portfolio import BEAMS, MOVES, WINDOW_NAMES, Portfolio, arm_name, arm_priors
from noisesearch.errors import NoiseSearchError
from noisesearch.problem import Problem
from noisesearch.sampling import Sampler
from noisesearch.search.base import SearchAlgorithm, check_beams, check_positive_int
from noisesearch.search.local import load_schedule
from noisesearch.search.registry import register_algorithm
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import SearchResult, Trace

BatchHook = Callable[[int, Portfolio], None]


@register_algorithm
@dataclass(frozen=True)
class OnlineAdaptiveEpsGreedy(SearchAlgorithm):
    """Adaptive ε-greedy with no separate calibration: the conditions are searched in order, `stream_batch` at a
    time. Without a prior `search_schedule`, every condition's arm — a move (N, ε, λ) of `moves`, a number B
    of `beams` and a window of searched steps of `windows` (uniform priors) — is chosen by Thompson sampling on
    the final rewards of the conditions before it (noisesearch.adaptive.portfolio); with one, that schedule is
    the only arm. An arm's K_t spread `target_nfe` calls per image by its prior's gains; with `learn_steps`,
    by a Thompson draw of the per-step gain curves its online learner fits to the traces of the conditions it
    searched (`credit` says how much of a step's observed gain counts, see noisesearch.adaptive.online:
    measured, those x0-prediction gains misplace the effort, so it is off by default). Every NFE makes a returned
    image; the result's config lists each condition's arm ("arms"). A condition's result depends on it and the
    conditions before it only (a prefix of the conditions gives the same images); `continuing` carries a
    learner over from earlier runs."""

    name = "online_adaptive_eps_greedy"
    source = ("ours: adaptive ε-greedy whose schedule is learned while the conditions stream, with no separate "
              "calibration")
    family = "online"
    nfe_doc = "at most `target_nfe` (as adaptive_eps_greedy under the learned schedule of each condition's arm)"
    searches_step_noise = True
    learns_across_conditions = True
    target_nfe: int | None = None
    search_schedule: SearchSchedule | str | None = None
    stream_batch: int = 16
    prior_weight: float = 4.0
    credit: str = "x0"
    moves: tuple[Move, ...] | None = None
    beams: tuple[int, ...] | None = None
    windows: tuple[str, ...] | None = None
    learn_steps: bool = False
    learner: Portfolio | None = field(default=None, init=False, repr=False, compare=False)
    on_batch: BatchHook | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.target_nfe is None:
            raise NoiseSearchError("online_adaptive_eps_greedy needs target_nfe, the denoiser calls per image")
        check_positive_int(target_nfe=self.target_nfe, stream_batch=self.stream_batch)
        object.__setattr__(self, "search_schedule", load_schedule(self.search_schedule))
        if self.search_schedule is not None:
            OnlineSchedule(self.search_schedule, self.prior_weight)  # a prior without gains fails here
            if self.moves is not None or self.beams is not None or self.windows is not None:
                raise NoiseSearchError("moves, beams and windows choose among uniform priors: drop them, or drop "
                                       "search_schedule")
        if self.credit not in CREDITS:
            raise NoiseSearchError(f"credit must be one of {', '.join(CREDITS)}, got {self.credit!r}")
        if self.moves is not None:
            object.__setattr__(self, "moves", CalibrationConfig(moves=self.moves).moves)
            if not self.moves:
                raise NoiseSearchError("moves must list at least one [N, eps, lambda_]")
        if self.beams is not None:
            object.__setattr__(self, "beams", check_beams(self.beams))
        if self.windows is not None:
            object.__setattr__(self, "windows", check_windows(tuple(self.windows)))

    def continuing(self, learner: Portfolio | OnlineSchedule,
                   on_batch: BatchHook | None = None) -> OnlineAdaptiveEpsGreedy:
        """This search, learning on from `learner` (its arms replace search_schedule, moves and beams; updated in
        place after every batch, after which `on_batch(batch index, learner)` is called)."""
        if any(v is not None for v in (self.search_schedule, self.moves, self.beams, self.windows)):
            raise NoiseSearchError("a continued learner keeps its own arms: drop search_schedule, moves, beams and "
                                   "windows")
        return self.using(learner if isinstance(learner, Portfolio) else Portfolio([learner]), on_batch)

    def using(self, learner: Portfolio, on_batch: BatchHook | None) -> OnlineAdaptiveEpsGreedy:
        algo = replace(self)
        object.__setattr__(algo, "learner", learner)
        object.__setattr__(algo, "on_batch", on_batch)
        return algo

    def params(self) -> dict[str, Any]:
        schedule = self.search_schedule
        params = {"target_nfe": self.target_nfe, "stream_batch": self.stream_batch, "prior_weight": self.prior_weight,
                  "credit": self.credit, "search_schedule": None if schedule is None else schedule.to_dict(),
                  "learn_steps": self.learn_steps}
        return params | {name: [list(m) for m in value] if name == "moves" else list(value)
                         for name, value in (("moves", self.moves), ("beams", self.beams), ("windows", self.windows))
                         if value is not None}

    def priors(self, sampler: Sampler) -> list[SearchSchedule]:
        """The arms' priors: the continued learner's, the given schedule, or one uniform prior per (move, B)."""
        if self.learner is not None:
            return [learner.prior for learner in self.learner.learners]
        if self.search_schedule is not None:
            return [self.search_schedule]
        return arm_priors(sampler, self.target_nfe, self.moves or MOVES, self.beams or BEAMS,
                          self.windows or WINDOW_NAMES)

    def inner(self, schedule: SearchSchedule) -> AdaptiveEpsGreedy:
        return AdaptiveEpsGreedy(search_schedule=schedule, target_nfe=self.target_nfe)

    def nfe_formula(self, sampler: Sampler) -> int | None:
        return None

    def nfe_estimate(self, sampler: Sampler) -> int:
        return self.target_nfe

    def expected_calls(self, sampler: Sampler, result: SearchResult) -> torch.Tensor:
        """N_t and B are each arm's prior's, so a condition's iterations cost as under its arm's prior."""
        priors = {arm_name(p): p for p in self.priors(sampler)}
        calls = torch.zeros_like(result.nfe)
        arms = result.config["arms"]
        for name in set(arms):
            rows = torch.tensor([a == name for a in arms])
            calls[rows] = self.inner(priors[name]).expected_calls(sampler, result)[rows]
        return calls

    def new_learner(self, sampler: Sampler, priors: list[SearchSchedule] | None = None) -> Portfolio:
        """A fresh portfolio over `priors` (default: this search's), each checked against `sampler`."""
        priors = self.priors(sampler) if priors is None else priors
        for prior in priors:
            prior.check_matches(sampler)
        return Portfolio.of(priors, self.prior_weight, self.credit)

    def run(self, problem: Problem) -> SearchResult:
        learner = self.learner if self.learner is not None else self.new_learner(problem.sampler)
        first = len(learner.history)
        result = super(OnlineAdaptiveEpsGreedy, self.using(learner, self.on_batch)).run(problem)
        names = learner.names
        return replace(result, config=result.config | {"arms": [names[a] for a in learner.history[first:]]})

    def _search(self, problem: Problem) -> tuple[torch.Tensor, torch.Tensor, Trace]:
        portfolio = self.learner
        states, rewards, traces, parts = [], [], [], []
        for index, start in enumerate(range(0, problem.n, self.stream_batch)):
            batch = torch.arange(start, min(start + self.stream_batch, problem.n))
            arms = portfolio.choose(len(batch))
            for arm in sorted(set(arms.tolist())):
                part = batch[torch.from_numpy(arms == arm)]
                schedule = portfolio.arm_schedule(arm, self.learn_steps)
                with problem.part(part) as sub:
                    x, r, trace = self.inner(schedule)._search(sub)
                portfolio.update(arm, trace, schedule, r.double().numpy())
                states.append(x)
                rewards.append(r)
                traces.append(trace)
                parts.append(part)
            portfolio.record(arms)
            if self.on_batch is not None:
                self.on_batch(index, portfolio)
        order = torch.argsort(torch.cat(parts))
        return torch.cat(states)[order], torch.cat(rewards)[order], Trace.concatenated(traces, parts)
