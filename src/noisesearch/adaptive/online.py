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
from noisesearch.files import write_atomically
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


MAX_VALUE = 1e100  # the largest magnitude a state file's number may have (beyond: damaged, or made up)
MAX_COUNT = 2 ** 53  # the largest count (batches, conditions, observations) a state file may hold
MAX_MOVE = 10 ** 6  # the largest N_t and B of a prior
HINT = "the file is damaged or not an online state: restore it, or start a new state file"


def invalid(name: str, problem: str) -> NoiseSearchError:
    """The one-line error for field `name` of a state file (the loader adds the file's path)."""
    return NoiseSearchError(f"field '{name}' {problem}")


def require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise invalid(f"{where}{key}", "is missing")
    return data[key]


def checked_number(value: Any, name: str, low: float | None = None, above: float | None = None) -> float:
    """A finite JSON number of magnitude at most MAX_VALUE (not a boolean), >= `low` and > `above` if given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(name, f"must be a number, got {type(value).__name__}")
    if isinstance(value, int) and abs(value) > MAX_VALUE:
        raise invalid(name, "is out of range")
    x = float(value)
    if not math.isfinite(x) or abs(x) > MAX_VALUE:
        raise invalid(name, f"must be a finite number of magnitude at most {MAX_VALUE:g}, got {x}")
    if low is not None and x < low:
        raise invalid(name, f"must be >= {low:g}, got {x:g}")
    if above is not None and not x > above:
        raise invalid(name, f"must be > {above:g}, got {x:g}")
    return x


def checked_count(value: Any, name: str, low: int = 0, high: int = MAX_COUNT) -> int:
    """A whole JSON number (an integer, not a boolean nor 1.0) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"must be a whole number, got {value!r}" if isinstance(value, float)
                      else f"must be a whole number, got {type(value).__name__}")
    if not low <= value <= high:
        raise invalid(name, f"must lie in [{low}, {high}], got {value if abs(value) < 10 ** 30 else 'a huge number'}")
    return value


def checked_array(value: Any, name: str, shape: tuple[int, ...], low: float | None = None,
                  whole: bool = False) -> np.ndarray:
    """Nested lists of exactly `shape` holding finite numbers (>= `low`; integer-valued if `whole`)."""
    rows: list[list[Any]] = []

    def walk(item: Any, depth: int, where: str) -> None:
        if not isinstance(item, list) or len(item) != shape[depth]:
            size = f"{len(item)} entries" if isinstance(item, list) else f"a {type(item).__name__}"
            raise invalid(where, f"must be a list of {shape[depth]} entries, got {size}")
        if depth + 1 < len(shape):
            for i, sub in enumerate(item):
                walk(sub, depth + 1, f"{where}[{i}]")
        else:
            rows.append(item)

    walk(value, 0, name)
    checked = []
    for r, row in enumerate(rows):
        if all(type(x) in (int, float) for x in row) and all(abs(x) <= MAX_VALUE for x in row):
            array = np.array(row, dtype=np.float64)
            if np.isfinite(array).all() and (low is None or (array >= low).all()) and \
                    (not whole or (array == np.round(array)).all()):
                checked.append(array)
                continue
        index = np.unravel_index(r, shape[:-1]) if len(shape) > 1 else ()
        where = name + "".join(f"[{i}]" for i in index)
        for j, x in enumerate(row):  # find the culprit, for the message
            number = checked_number(x, f"{where}[{j}]", low)
            if whole and not number.is_integer():
                raise invalid(f"{where}[{j}]", f"must be a whole number, got {number:g}")
    return np.array(checked, dtype=np.float64).reshape(shape)


def strict_json(value: Any) -> bool:
    """Whether `value` writes as strict JSON (no NaN or inf), so that a state holding it can be saved again."""
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def checked_prior(value: Any, name: str) -> SearchSchedule:
    """A learner's prior: a search schedule with gains, finite sigmas and moves of sane size."""
    try:
        prior = SearchSchedule.from_dict(value)
    except NoiseSearchError as err:
        raise invalid(name, f"is not a valid search schedule ({err})") from None
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as err:
        raise invalid(name, f"is not a valid search schedule ({type(err).__name__})") from None
    if prior.gains is None:
        raise invalid(f"{name}.gains", "is missing (a learner's prior needs gains)")
    if not prior.steps:
        raise invalid(f"{name}.steps", "is empty")
    if any(b <= a for a, b in zip(prior.steps, prior.steps[1:], strict=False)) or prior.steps[0] < 0:
        raise invalid(f"{name}.steps", "must be increasing step indices >= 0")
    for t, sigma in enumerate(prior.sigmas):
        checked_number(sigma, f"{name}.sigmas[{t}]", above=0.0)
    for t, row in enumerate(prior.gains):
        for k, gain in enumerate(row):
            checked_number(gain, f"{name}.gains[{t}][{k}]")
    if any(n > MAX_MOVE for n in prior.N) or any(k > MAX_COUNT for k in prior.K):
        raise invalid(f"{name}.N", f"entries must be at most {MAX_MOVE}")
    info = prior.info
    if not strict_json(info):
        raise invalid(f"{name}.info", "must hold JSON values only (no NaN or inf)")
    if "lambda_" in info:
        checked_number(info["lambda_"], f"{name}.info.lambda_", above=0.0)
    if "B" in info:
        checked_count(info["B"], f"{name}.info.B", low=1, high=MAX_MOVE)
    if "target_nfe" in info:
        checked_count(info["target_nfe"], f"{name}.info.target_nfe", low=1)
    if "window" in info and info["window"] not in WINDOWS:
        raise invalid(f"{name}.info.window", f"must be one of {', '.join(WINDOWS)}")
    return prior


def save_state(data: dict[str, Any], path: str | Path) -> None:
    """Write a learner's state as JSON through a uniquely named temporary file and an atomic replace (a reader
    never sees half a file; no other file is touched)."""
    try:
        text = json.dumps(data, allow_nan=False)
    except ValueError:
        raise NoiseSearchError(f"the online state for {path} holds NaN or inf; it was not saved") from None
    write_atomically(Path(path), text + "\n")


def read_state(path: str | Path) -> Any:
    """The JSON of a learner's state file, or a one-line error."""
    try:
        text = Path(path).read_bytes()
    except OSError as err:
        raise NoiseSearchError(f"cannot read online state '{path}': {err.strerror}") from None
    try:
        return json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise NoiseSearchError(f"online state '{path}' is not UTF-8 text (not an online state file)") from None
    except json.JSONDecodeError as err:
        raise NoiseSearchError(f"online state '{path}' is not JSON: {err.msg} (line {err.lineno}); "
                               f"{HINT}") from None
    except (ValueError, RecursionError):  # numbers of over 4300 digits; nesting deeper than Python's stack
        raise NoiseSearchError(f"online state '{path}' is not JSON that noisesearch reads; {HINT}") from None


class StateFile:
    """`save` and `load` of a learner's state through its to_dict / from_dict; `load` validates every field
    before returning, and names the file and the field in its one-line error."""

    def save(self, path: str | Path) -> None:
        save_state(self.to_dict(), path)  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: str | Path) -> Any:
        data = read_state(path)
        try:
            return cls.from_dict(data)  # type: ignore[attr-defined]
        except NoiseSearchError as err:
            raise NoiseSearchError(f"online state '{path}': {err}; {HINT}") from None
        except RecursionError:  # pragma: no cover  (json.loads refuses such nesting first)
            raise NoiseSearchError(f"online state '{path}' is nested too deeply; {HINT}") from None


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
    def from_dict(cls, data: Any, name: str = "") -> OnlineSchedule:
        """A learner from its JSON data, every field checked (a one-line error naming the first bad one; `name`
        is where the data sits in its file). States written before survival credit hold neither its
        statistics nor a credit: they learned with "x0"."""
        if not isinstance(data, dict) or data.get("format") != ONLINE_FORMAT:
            raise NoiseSearchError(f"{name + ': ' if name else ''}not an online schedule (expected format "
                                   f"'{ONLINE_FORMAT}')")
        where = f"{name}." if name else ""
        prior = checked_prior(require(data, "prior", where), f"{where}prior")
        prior_weight = checked_number(require(data, "prior_weight", where), f"{where}prior_weight", above=0.0)
        batches = checked_count(require(data, "batches", where), f"{where}batches")
        conditions = checked_count(require(data, "conditions", where), f"{where}conditions")
        credit = data.get("credit", "x0")
        if credit not in CREDITS:
            raise invalid(f"{where}credit", f"must be one of {', '.join(CREDITS)}")
        S = len(prior.steps)
        stats: dict[str, np.ndarray | None] = {}
        for stat in STATISTICS:
            if stat not in data and stat in ("offered", "survived"):
                stats[stat] = None
                continue
            shape = (S, ITERATIONS) if stat in ("sums", "squares", "counts") else (S,)
            low = 0.0 if stat in ("squares", "counts", "global_wins", "local_wins") else None
            stats[stat] = checked_array(require(data, stat, where), f"{where}{stat}", shape, low,
                                        whole=stat == "counts")
        return cls(prior, prior_weight, **stats, batches=batches, conditions=conditions,  # type: ignore[arg-type]
                   credit=credit)
