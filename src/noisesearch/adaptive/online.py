"""Online adaptation of adaptive ε-greedy: a search schedule learned from the searches' own traces, with no
separate calibration (the proposal of Ramesh and Mardani, "Test-Time Scaling of Diffusion Models via Noise
Trajectory Search", arXiv 2506.03164: "collect statistics on observed rewards and when the pivot was changed
from previously generated images").

The model, per searchable step t and iteration k: the gain d = (incumbent score after iteration k) −
(incumbent score before it; for k = 1 the mean score of that iteration's candidates, a plain draw) is
Gaussian with unknown mean g_t(k). Its prior is the prior schedule's gain curve in *shape* (pseudo-count
`prior_weight` per (t, k)), in a *scale* fitted to the observed gains (so a schedule calibrated in another
reward's or method's units still serves as a prior); the posterior mean is the pseudo-count-weighted average
of prior and data. Before each batch the learner re-plans with Thompson sampling: one standard-normal draw per
step moves that step's whole curve by its posterior standard deviation, so steps it knows little about are
tried. K_t then follow from the per-image budget by `allocate_iterations`; ε_t from the global and local wins
(as `fit_eps`, each win weighted by how often its kind was drawn). N_t, λ and B stay the prior's.

Credit (`credit="survival"`; the default "x0" counts gains whole): a gain in the x0-prediction score at a
high σ need not reach the
final image. The search sees how much of it survives, at no extra cost: the mean score m_t of a step's first
candidates (plain draws from the state the step starts from) is, for a denoiser whose x0 prediction is the
posterior mean and a reward linear in x0, what the step would score on average unsearched, and the next
searched step's m (or the final reward after the last one) is what the searched state scores. Step t's
observed gains count by ρ_t = Σ (m_next − m_t) ÷ Σ (best_t − m_t), clipped to [0, 1], over every condition seen.
Measured on 256-label streams it helped brightness (a reward linear in x0) and hurt compressibility and the
classifier, so it is not the default.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from noisesearch.adaptive.allocation import marginal_gain
from noisesearch.adaptive.fits import marginal_gains
from noisesearch.errors import NoiseSearchError
from noisesearch.sampling import Sampler
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import Trace

ONLINE_FORMAT = "noisesearch.online_schedule/1"
ITERATIONS = 200  # iterations per step the learner keeps statistics for (beyond: the extrapolated prior)
UNIFORM_K, UNIFORM_EPS, UNIFORM_N = 20, 0.4, 4  # the prior schedule when none is given: ε-greedy (4, 20)
STATISTICS = ("sums", "squares", "counts", "global_wins", "local_wins", "offered", "survived")  # accumulated
CREDITS = ("survival", "x0")


WINDOWS = {"all": (0.0, 1.0), "middle": (0.15, 0.7)}  # shares of the searchable steps a uniform prior searches


def check_windows(windows: tuple[str, ...]) -> tuple[str, ...]:
    """The window names, or a one-line error naming the first unknown one (or that none was given)."""
    unknown = [w for w in windows if w not in WINDOWS] or ([] if windows else ["(none)"])
    if unknown:
        raise NoiseSearchError(f"unknown window '{unknown[0]}': choose among {', '.join(WINDOWS)}")
    return tuple(windows)


def uniform_prior(sampler: Sampler, N: int = UNIFORM_N, eps: float = UNIFORM_EPS, lambda_: float = 0.15,
                  B: int = 1, window: str = "all") -> SearchSchedule:
    """The prior when nothing is known: one move (default ε-greedy with N = 4, ε = 0.4, λ = 0.15) and B, with the
    same diminishing gains 1/k (the expected maximum of k draws grows about as log k) at every searchable step
    of `window` ("all", or "middle": from 15 % to 70 % of the way through them, the paper's Appendix J.1 idea
    that exploitation pays at intermediate noise) and none elsewhere."""
    check_windows((window,))
    steps = sampler.searchable_steps()
    lo, hi = (round(share * len(steps)) for share in WINDOWS[window])
    gains = tuple(tuple(1.0 / k if lo <= t < max(hi, lo + 1) else 0.0 for k in range(1, UNIFORM_K + 1))
                  for t in range(len(steps)))
    info = {"method": "uniform prior", "lambda_": lambda_, "B": B} | ({} if window == "all" else {"window": window})
    return SearchSchedule.uniform(sampler, UNIFORM_K, eps, N, gains=gains, info=info)


def save_state(data: dict[str, Any], path: str | Path) -> None:
    """Write a learner's state as JSON, atomically (a reader never sees half a file)."""
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(data) + "\n")
    tmp.replace(path)


def read_state(path: str | Path) -> Any:
    """The JSON of a learner's state file, or a one-line error."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise NoiseSearchError(f"cannot read online schedule '{path}': {err.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise NoiseSearchError(f"online schedule '{path}' is not JSON (not an online schedule file)") from None


class StateFile:
    """`save` and `load` of a learner's state through its to_dict / from_dict."""

    def save(self, path: str | Path) -> None:
        save_state(self.to_dict(), path)  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: str | Path) -> Any:
        return cls.from_dict(read_state(path))  # type: ignore[attr-defined]


@dataclass
class OnlineSchedule(StateFile):
    """What the online learner knows: the prior schedule and per (step, iteration) sums of observed gains."""

    prior: SearchSchedule
    prior_weight: float = 4.0
    sums: np.ndarray = field(default=None)  # type: ignore[assignment]  # (S, ITERATIONS) Σ d
    squares: np.ndarray = field(default=None)  # type: ignore[assignment]  # (S, ITERATIONS) Σ d²
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]  # (S, ITERATIONS) observations
    global_wins: np.ndarray = field(default=None)  # type: ignore[assignment]  # (S,) Σ global wins / ε
    local_wins: np.ndarray = field(default=None)  # type: ignore[assignment]  # (S,) Σ local wins / (1 − ε)
    offered: np.ndarray = field(default=None)  # type: ignore[assignment]  # (S,) Σ (best_t − m_t)
    survived: np.ndarray = field(default=None)  # type: ignore[assignment]  # (S,) Σ (m_next − m_t)
    batches: int = 0
    conditions: int = 0
    credit: str = "x0"
    prior_curves: np.ndarray = field(init=False, repr=False, compare=False)  # (S, ITERATIONS) from `prior`

    def __post_init__(self) -> None:
        if self.prior.gains is None:
            raise NoiseSearchError("the online learner's prior schedule needs gains (made by `noisesearch calibrate`)")
        if not self.prior_weight > 0:
            raise NoiseSearchError(f"prior_weight must be > 0, got {self.prior_weight}")
        if self.credit not in CREDITS:
            raise NoiseSearchError(f"credit must be one of {', '.join(CREDITS)}, got {self.credit!r}")
        S = len(self.prior.steps)
        for name, shape in zip(STATISTICS, [(S, ITERATIONS)] * 3 + [(S,)] * 4, strict=True):
            value = getattr(self, name)
            setattr(self, name, np.zeros(shape) if value is None else np.asarray(value, dtype=np.float64))
            if getattr(self, name).shape != shape:
                raise NoiseSearchError(f"online schedule: {name} has shape {getattr(self, name).shape}, not {shape}")
        # the prior's marginal gain of each iteration, extrapolated past its calibrated K
        self.prior_curves = np.array([[marginal_gain(row, k) for k in range(1, ITERATIONS + 1)]
                                      for row in self.prior.gains])

    def survival(self) -> np.ndarray:
        """ρ_t per step: the share of its x0-prediction gains that survived (1 where none were seen, or with
        credit "x0")."""
        if self.credit == "x0":
            return np.ones(len(self.offered))
        seen = self.offered > 0
        return np.where(seen, np.clip(self.survived / np.where(seen, self.offered, 1.0), 0.0, 1.0), 1.0)

    def scale(self) -> float:
        """The factor that puts the prior's gains in the units of the observed ones: Σ observed gains over
        Σ prior gains at the observed (step, iteration) cells, each cell weighted by its observations
        (1 before any observation)."""
        prior = (self.prior_curves * self.counts).sum()
        observed = (self.survival()[:, None] * self.sums).sum()
        return float(observed / prior) if prior > 0 and observed > 0 else 1.0

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of every marginal gain g_t(k), (S, ITERATIONS) each."""
        prior = self.scale() * self.prior_curves
        rho = self.survival()[:, None]
        sums, squares = rho * self.sums, rho ** 2 * self.squares
        n = self.prior_weight + self.counts
        mean = (self.prior_weight * prior + sums) / n
        spread = np.where(self.counts > 1, squares / np.maximum(self.counts, 1)
                          - (sums / np.maximum(self.counts, 1)) ** 2, 0.0)
        observed = self.counts.sum(axis=1, keepdims=True)
        pooled = np.where(observed > 1, (spread * self.counts).sum(axis=1, keepdims=True) / np.maximum(observed, 1),
                          0.0)  # per step: the variance of one observation, pooled over iterations
        variance = np.maximum(pooled, prior ** 2)  # before data, the prior is uncertain by its own size
        return mean, np.sqrt(variance / n)

    def eps(self) -> tuple[float, ...]:
        """ε_t from the weighted wins, with a pseudo-count of the prior's own ε_t (one win in all)."""
        fitted = []
        for t, prior_eps in enumerate(self.prior.eps):
            if prior_eps in (0.0, 1.0):  # runs that drew one kind only cannot compare the kinds
                fitted.append(prior_eps)
                continue
            g, loc = self.global_wins[t] + prior_eps, self.local_wins[t] + (1 - prior_eps)
            fitted.append(float(g / (g + loc)))
        return tuple(fitted)

    def next_schedule(self, draw: bool = True, seed: int | None = None) -> SearchSchedule:
        """The schedule for the next batch: gains from a Thompson draw (`draw`, seeded by `seed`, default the
        number of batches seen) or the posterior mean, made non-negative and non-increasing in k."""
        mean, sd = self.posterior()
        if draw:
            rng = np.random.default_rng(self.batches if seed is None else seed)
            mean = mean + rng.standard_normal((len(mean), 1)) * sd
        K = ITERATIONS
        gains = marginal_gains(np.cumsum(mean, axis=1), np.zeros_like(mean), np.array(self.prior.sigmas),
                               range(1, K + 1), K, smooth=False)
        kept = ("lambda_", "B", "target_nfe", "reward", "sampler")
        info = {**{k: v for k, v in self.prior.info.items() if k in kept},
                "method": "online", "batches": self.batches, "conditions": self.conditions,
                "prior": self.prior.info.get("method", "schedule"), "calibration_nfe": 0, "credit": self.credit,
                "survival": self.survival().tolist()}
        return replace(self.prior, eps=self.eps(), gains=tuple(tuple(row) for row in gains), info=info)

    def update(self, trace: Trace, schedule: SearchSchedule, final: np.ndarray | None = None) -> None:
        """Add the gains and wins of one batch's search (its `trace`, run under `schedule`) and what of them
        survived (`final`: the final reward of each of its conditions, which credits each one's last searched
        step; without it that step's survival is not observed)."""
        column = {step: t for t, step in enumerate(self.prior.steps)}
        cond, step = trace.condition.numpy(), trace.step.numpy()
        k, incumbent, mean = trace.iteration.numpy(), trace.incumbent_score.double().numpy(), trace.mean_score.numpy()
        changed, is_global = trace.changed.numpy(), trace.winner_global.numpy()
        order = np.lexsort((k, step, cond))
        previous: dict[tuple[int, int], float] = {}
        for row in order:
            c, i, j = int(cond[row]), int(step[row]), int(k[row])
            if i not in column:
                raise NoiseSearchError(f"the trace searched step {i}, which the online schedule does not have")
            t = column[i]
            before = float(mean[row]) if j == 1 else previous[(c, i)]
            if not math.isfinite(before):
                raise NoiseSearchError("the trace has no candidate mean scores; record it with this version")
            previous[(c, i)] = float(incumbent[row])
            if j <= ITERATIONS:
                d = float(incumbent[row]) - before
                self.sums[t, j - 1] += d
                self.squares[t, j - 1] += d * d
                self.counts[t, j - 1] += 1
            eps = schedule.eps[t]
            if changed[row] and j > 1 and 0 < eps < 1:
                if is_global[row]:
                    self.global_wins[t] += 1 / eps
                else:
                    self.local_wins[t] += 1 / (1 - eps)
        self.add_survival(trace, column, final)
        self.batches += 1
        self.conditions += len(np.unique(cond))

    def add_survival(self, trace: Trace, column: dict[int, int], final: np.ndarray | None) -> None:
        """Per condition and searched step t: offered += best_t − m_t, survived += m_next − m_t (see the module)."""
        cond, step, k = trace.condition.numpy(), trace.step.numpy(), trace.iteration.numpy()
        incumbent, mean = trace.incumbent_score.double().numpy(), trace.mean_score.double().numpy()
        for c in np.unique(cond):
            rows = cond == c
            searched = sorted(set(step[rows].tolist()))
            start = [float(mean[rows & (step == i) & (k == 1)].mean()) for i in searched]
            last = [rows & (step == i) & (k == k[rows & (step == i)].max()) for i in searched]
            best = [float(incumbent[r].max()) for r in last]
            after = start[1:] + ([] if final is None else [float(final[c])])
            for i, s, b, a in zip(searched[:len(after)], start, best, after, strict=False):
                self.offered[column[i]] += b - s
                self.survived[column[i]] += a - s

    def to_dict(self) -> dict[str, Any]:
        return {"format": ONLINE_FORMAT, "prior": self.prior.to_dict(), "prior_weight": self.prior_weight,
                "batches": self.batches, "conditions": self.conditions, "credit": self.credit,
                **{name: getattr(self, name).tolist() for name in STATISTICS}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OnlineSchedule:
        if not isinstance(data, dict) or data.get("format") != ONLINE_FORMAT:
            raise NoiseSearchError(f"not an online schedule (expected format '{ONLINE_FORMAT}')")
        try:
            # states written before survival credit hold neither its statistics nor a credit: they learned with x0
            stats = {name: None if name not in data else np.asarray(data[name], dtype=np.float64)
                     for name in STATISTICS}
            return cls(SearchSchedule.from_dict(data["prior"]), float(data["prior_weight"]), **stats,
                       batches=int(data["batches"]), conditions=int(data["conditions"]),
                       credit=data.get("credit", "x0"))
        except (KeyError, TypeError, ValueError) as err:
            raise NoiseSearchError(f"malformed online schedule: {err}") from None
