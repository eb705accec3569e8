"""Choosing the move, the beam and the searched steps online: a portfolio of online learners, one per arm (a
move (N, ε, λ), a number B of incumbents and a window of searched steps, each with its own per-step gain
curves, noisesearch.adaptive.online), and a Thompson sampler over the arms on the final rewards of the images
they returned.

The model: the final reward of a condition searched by arm a is Gaussian with unknown mean μ_a and a variance s²
shared by the arms (pooled from every arm's observations; their sample variance before any arm has two). The
posterior of μ_a is N(mean_a, s²/n_a) (a flat prior). Every condition of a stream batch gets the arm of the
largest draw from these posteriors, after each arm has been tried `MIN_TRIALS` times (round robin, in arm
order); the arms' learners then learn from the conditions they searched. Conditions are drawn at random, so
arms compare fairly across them; nothing is spent outside the returned images' own searches."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from noisesearch import cost
from noisesearch.adaptive.online import (
    WINDOWS,
    OnlineSchedule,
    StateFile,
    checked_array,
    checked_count,
    invalid,
    require,
    strict_json,
    uniform_prior,
)
from noisesearch.errors import NoiseSearchError
from noisesearch.sampling import Sampler
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import Trace

PORTFOLIO_FORMAT = "noisesearch.online_portfolio/2"  # /1 held no settings (migrated on load)
PORTFOLIO_FORMAT_1 = "noisesearch.online_portfolio/1"
MAX_ARMS = 1024
SETTINGS = ("backend", "model", "reward", "reward_args", "guidance", "sampler")  # what a state is bound to
MOVES = ((1, 0.15, 0.45), (4, 1.0, 0.15))  # a hill climb (N = 1, mostly local draws) and random search per step
BEAMS = (1, 2)
WINDOW_NAMES = tuple(WINDOWS)
MIN_TRIALS = 2  # conditions per arm before Thompson sampling takes over
REWARD_STATS = ("sums", "squares", "counts")


def arm_priors(sampler: Sampler, target_nfe: int, moves: tuple[tuple[int, float, float], ...] = MOVES,
               beams: tuple[int, ...] = BEAMS, windows: tuple[str, ...] = WINDOW_NAMES) -> list[SearchSchedule]:
    """One uniform prior per (move, B, window) whose B plain trajectories leave at least half of `target_nfe`
    calls to search with (a one-line error when none does)."""
    trajectory = cost.trajectory_calls(sampler)
    priors = [uniform_prior(sampler, N, eps, lambda_, B, window) for N, eps, lambda_ in moves for B in beams
              for window in windows if 2 * B * trajectory <= target_nfe]
    if not priors:
        raise NoiseSearchError(f"target_nfe {target_nfe} leaves no arm half its calls to search with (a plain "
                               f"trajectory costs {trajectory}): raise it, or give one move and B = 1")
    return priors


def arm_name(prior: SearchSchedule) -> str:
    """e.g. "N4 eps0.4 lambda0.15 B1" (the step-0 move of a prior and its B), then " middle" for a window."""
    window = prior.info.get("window")
    return (f"N{prior.N[0]} eps{prior.eps[0]:g} lambda{prior.info.get('lambda_', 0.15):g} B{prior.info.get('B', 1)}"
            + (f" {window}" if window else ""))


@dataclass
class Portfolio(StateFile):
    """The learners of the arms and the final rewards of the conditions each arm searched."""

    learners: list[OnlineSchedule]
    sums: np.ndarray = field(default=None)  # type: ignore[assignment]  # (A,) Σ final reward
    squares: np.ndarray = field(default=None)  # type: ignore[assignment]  # (A,) Σ final reward²
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]  # (A,) conditions searched
    batches: int = 0
    history: list[int] = field(default_factory=list)  # the arm of every condition searched, in order
    settings: dict[str, Any] | None = None  # SETTINGS of the runs it learned from (None: not known yet)

    def __post_init__(self) -> None:
        if not self.learners:
            raise NoiseSearchError("a portfolio needs at least one arm")
        for name in REWARD_STATS:
            value = getattr(self, name)
            setattr(self, name, np.zeros(len(self.learners)) if value is None else np.asarray(value, np.float64))
            if getattr(self, name).shape != (len(self.learners),):
                raise NoiseSearchError(f"online portfolio: {name} has {getattr(self, name).size} entries, not "
                                       f"{len(self.learners)}")

    @classmethod
    def of(cls, priors: list[SearchSchedule], prior_weight: float = 4.0, credit: str = "x0") -> Portfolio:
        return cls([OnlineSchedule(p, prior_weight, credit=credit) for p in priors])

    @property
    def names(self) -> list[str]:
        return [arm_name(learner.prior) for learner in self.learners]

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of each arm's mean final reward (inf where never tried)."""
        n = np.maximum(self.counts, 1)
        mean = self.sums / n
        within = self.squares - self.sums ** 2 / n
        if (self.counts > 1).any():
            variance = within[self.counts > 1].sum() / (self.counts[self.counts > 1] - 1).sum()
        else:
            total = self.counts.sum()
            variance = (self.squares.sum() - self.sums.sum() ** 2 / total) / (total - 1) if total > 1 else 0.0
        sd = np.where(self.counts > 0, np.sqrt(max(variance, 0.0) / n), np.inf)
        return mean, sd

    def choose(self, n: int) -> np.ndarray:
        """The arm of each of the next `n` conditions (seeded by the number of batches seen)."""
        rng = np.random.default_rng([self.batches, 1])
        planned = self.counts.copy()
        mean, sd = self.posterior()
        arms = []
        for _ in range(n):
            short = np.flatnonzero(planned < MIN_TRIALS)
            if short.size:
                arm = int(short[np.argmin(planned[short])])
            else:
                arm = int(np.argmax(mean + rng.standard_normal(len(mean)) * sd))
            planned[arm] += 1
            arms.append(arm)
        return np.array(arms, dtype=np.int64)

    def arm_schedule(self, arm: int, learn_steps: bool, draw: bool = True) -> SearchSchedule:
        """The schedule of `arm`'s next part: with `learn_steps` its learner's Thompson draw (its posterior mean
        if not `draw`), else its prior."""
        learner = self.learners[arm]
        return learner.next_schedule(draw=draw) if learn_steps else learner.prior

    def best(self) -> int:
        """The arm of the largest posterior mean among those tried (the first arm before any)."""
        if not self.counts.any():
            return 0
        mean, _ = self.posterior()
        return int(np.argmax(np.where(self.counts > 0, mean, -np.inf)))

    def update(self, arm: int, trace: Trace, schedule: SearchSchedule, final: np.ndarray) -> None:
        """Add one arm's part of a batch: its learner learns from the trace, the arm from the final rewards."""
        self.learners[arm].update(trace, schedule, final)
        self.sums[arm] += final.sum()
        self.squares[arm] += (final ** 2).sum()
        self.counts[arm] += len(final)

    def record(self, arms: np.ndarray) -> None:
        """End a batch whose conditions searched with `arms`."""
        self.history.extend(int(a) for a in arms)
        self.batches += 1

    def summary(self) -> list[dict[str, Any]]:
        mean, sd = self.posterior()
        return [{"arm": name, "conditions": int(c), "mean_reward": float(m) if c else None,
                 "sd": float(s) if c else None}
                for name, c, m, s in zip(self.names, self.counts, mean, sd, strict=True)]

    def bind(self, settings: dict[str, Any]) -> None:
        """Check that this state learned under `settings` (those of `state_settings`), or a one-line error
        naming the first that differs. A state that does not know its settings (written before format 2)
        adopts these on its first use: the runs that made it are assumed to have had them."""
        if self.settings is None:
            self.settings = settings
            return
        for key in SETTINGS:
            theirs, ours = self.settings.get(key), settings.get(key)
            if theirs == ours:
                continue
            what = key
            if isinstance(theirs, dict) and isinstance(ours, dict):
                sub = next(k for k in sorted(set(theirs) | set(ours), key=str) if theirs.get(k) != ours.get(k))
                what, theirs, ours = f"{key} {sub}", theirs.get(sub), ours.get(sub)
            raise NoiseSearchError(f"it was learned with {what} {theirs!r}, not {ours!r}: run with the same "
                                   f"settings, or start a new state file")

    def to_dict(self) -> dict[str, Any]:
        return {"format": PORTFOLIO_FORMAT, "settings": self.settings, "batches": self.batches,
                "history": self.history, "learners": [learner.to_dict() for learner in self.learners],
                **{name: getattr(self, name).tolist() for name in REWARD_STATS}}

    @classmethod
    def from_dict(cls, data: Any) -> Portfolio:
        """A portfolio from its JSON data, every field checked (a one-line error naming the first bad one).
        Older states are migrated: a single learner's (written before portfolios) becomes a portfolio of one
        arm, and format 1 (no settings) gets settings None, which the next run's settings fill (`bind`)."""
        if not isinstance(data, dict):
            raise NoiseSearchError(f"not an online state (expected a JSON object of format '{PORTFOLIO_FORMAT}')")
        fmt = data.get("format")
        if fmt not in (PORTFOLIO_FORMAT, PORTFOLIO_FORMAT_1):
            if fmt is None or isinstance(fmt, str) and fmt.startswith("noisesearch.online_schedule"):
                return cls([OnlineSchedule.from_dict(data)])
            raise NoiseSearchError(f"not an online state (expected format '{PORTFOLIO_FORMAT}')")
        learners = require(data, "learners", "")
        if not isinstance(learners, list) or not 1 <= len(learners) <= MAX_ARMS:
            raise invalid("learners", f"must be a list of 1 to {MAX_ARMS} learners")
        arms = [OnlineSchedule.from_dict(d, f"learners[{i}]") for i, d in enumerate(learners)]
        A = len(arms)
        for i, learner in enumerate(arms[1:], 1):
            if (learner.prior.steps, learner.prior.sigmas) != (arms[0].prior.steps, arms[0].prior.sigmas):
                raise invalid(f"learners[{i}].prior", "was made for other steps than learners[0]'s")
        stats = {name: checked_array(require(data, name, ""), name, (A,), None if name == "sums" else 0.0,
                                     whole=name == "counts") for name in REWARD_STATS}
        batches = checked_count(require(data, "batches", ""), "batches")
        history = require(data, "history", "")
        if not isinstance(history, list):
            raise invalid("history", "must be a list of arm indices")
        for i, arm in enumerate(history):
            checked_count(arm, f"history[{i}]", high=A - 1)
        if not np.array_equal(np.bincount(np.array(history, dtype=np.int64), minlength=A), stats["counts"]):
            raise invalid("history", "does not match counts (conditions per arm)")
        settings = None if fmt == PORTFOLIO_FORMAT_1 else checked_settings(require(data, "settings", ""))
        return cls(arms, **stats, batches=batches, history=list(history), settings=settings)


def checked_settings(value: Any) -> dict[str, Any] | None:
    """The settings a state is bound to: an object holding exactly SETTINGS, of the right types (or null: a state
    saved outside `search_online`, which adopts the settings of its first run there)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != set(SETTINGS):
        raise invalid("settings", f"must be an object of {', '.join(SETTINGS)}")
    if not strict_json(value):
        raise invalid("settings", "must hold JSON values only (no NaN or inf)")
    kinds = {"backend": (str,), "model": (str, type(None)), "reward": (str,), "reward_args": (dict,),
             "guidance": (int, float, type(None)), "sampler": (dict,)}
    for key, types in kinds.items():
        if not isinstance(value[key], types) or isinstance(value[key], bool):
            raise invalid(f"settings.{key}", f"must be a {' or '.join(t.__name__ for t in types)}")
    return value


def state_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The SETTINGS of a run (from its config), as they read back from JSON."""
    return json.loads(json.dumps({key: config.get(key) for key in SETTINGS}, default=str))
