"""Per-step search schedules: how many local-search iterations (K_t), which mixture weight (ε_t) and how
many candidates (N_t) to use at each searchable sampler step, with the calibration data behind them."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from noisesearch.checks import is_finite_number, is_json_int, shown_json
from noisesearch.errors import NoiseSearchError
from noisesearch.files import read_json_file, write_atomically
from noisesearch.naming import renamed_keys
from noisesearch.sampling import Sampler

SCHEDULE_FORMAT = "noisesearch.search_schedule/2"
RENAMED_INFO = {"budget": "target_nfe"}  # {old info key: new}: an old spelling in code warns for a release


def migrated_from_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 named info["target_nfe"] "budget"."""
    info = data.get("info")
    if isinstance(info, dict):
        data = {**data, "info": {RENAMED_INFO.get(k, k): v for k, v in info.items()}}
    return {**data, "format": SCHEDULE_FORMAT}


MIGRATIONS = {"noisesearch.search_schedule/1": migrated_from_1}  # {older format: its data as the current one}


# The info entries code reads (the adaptive algorithm, calibrate's summary, reports), each checked where present:
# {key: (check, what it must be)}.
INFO_CHECKS = {
    "B": (lambda v: is_json_int(v) and v >= 1, "an integer of at least 1"),
    "lambda_": (lambda v: is_finite_number(v) and v > 0, "a positive number"),
    "target_nfe": (lambda v: v is None or is_json_int(v) and v >= 1, "an integer of at least 1 (or null)"),
    "N": (lambda v: is_json_int(v) and v >= 1, "an integer of at least 1"),
    "K": (lambda v: is_json_int(v) and v >= 0, "an integer of at least 0"),
    "eps": (lambda v: is_finite_number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "conditions": (lambda v: is_json_int(v) and v >= 0, "an integer of at least 0"),
    "validation_conditions": (lambda v: is_json_int(v) and v >= 0, "an integer of at least 0"),
    "calibration_nfe": (lambda v: is_json_int(v) and v >= 0, "an integer of at least 0"),
    "calibration_nfe_per_condition": (lambda v: is_finite_number(v) and v >= 0, "a number of at least 0"),
    "method": (lambda v: isinstance(v, str), "a string"),
    "sampler": (lambda v: isinstance(v, dict), "a JSON object"),
    "candidates": (lambda v: isinstance(v, list) and all(isinstance(c, dict) for c in v), "a list of JSON objects"),
}


def check_info(info: Any) -> None:
    """A one-line NoiseSearchError unless `info` is a dict whose entries of INFO_CHECKS are what code reads."""
    if not isinstance(info, dict):
        raise NoiseSearchError(f"schedule: info must be a JSON object, got {shown_json(info, 80)}")
    for key, (check, noun) in INFO_CHECKS.items():
        if key in info and not check(info[key]):
            raise NoiseSearchError(f"schedule: info {key} must be {noun}, got {shown_json(info[key], 80)}")


def whole(value: Any, name: str) -> int:
    """An integer-valued entry of a schedule file (3 or 3.0, not 2.7 or true); a ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ValueError(f"{name} entries must be whole numbers, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SearchSchedule:
    """K_t, ε_t and N_t per searchable step of one sampler (`steps` are sampler step indices,
    `sigmas` their σ_i). `gains[t][k-1]`, when present, is the expected reward gain of iteration k at
    step t (k = 1: best of N_t over a single draw); the budget allocator and early stopping use it.
    `info` records how the schedule was made (method, reward, calibration cost, and `target_nfe`: the calls per
    image its K_t were allocated for; given as "budget", its old name, it warns)."""

    steps: tuple[int, ...]
    sigmas: tuple[float, ...]
    K: tuple[int, ...]
    eps: tuple[float, ...]
    N: tuple[int, ...]
    gains: tuple[tuple[float, ...], ...] | None = None
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.info, dict) and any(old in self.info for old in RENAMED_INFO):
            object.__setattr__(self, "info", renamed_keys(RENAMED_INFO, self.info, "search schedule info"))
        check_info(self.info)
        n = len(self.steps)
        columns = {"sigmas": self.sigmas, "K": self.K, "eps": self.eps, "N": self.N}
        if self.gains is not None:
            columns["gains"] = self.gains
        for name, values in columns.items():
            if len(values) != n:
                raise NoiseSearchError(f"schedule: {name} has {len(values)} entries for {n} steps")
        if any(not isinstance(k, int) or k < 0 for k in self.K):
            raise NoiseSearchError(f"schedule: every K_t must be an integer >= 0, got {list(self.K)}")
        if any(not isinstance(m, int) or m < 1 for m in self.N):
            raise NoiseSearchError(f"schedule: every N_t must be an integer >= 1, got {list(self.N)}")
        if any(not 0 <= e <= 1 for e in self.eps):
            raise NoiseSearchError(f"schedule: every eps_t must lie in [0, 1], got {list(self.eps)}")
        if self.gains is not None and any(not all(math.isfinite(g) for g in row) for row in self.gains):
            raise NoiseSearchError("schedule: gains must be finite numbers")

    @classmethod
    def uniform(cls, sampler: Sampler, K: int | Sequence[int], eps: float | Sequence[float],
                N: int | Sequence[int], **kwargs: Any) -> SearchSchedule:
        """The same (or the given per-step) K, ε and N at every searchable step of `sampler`."""
        steps = sampler.searchable_steps()

        def per_step(value: Any) -> tuple:
            return tuple(value) if isinstance(value, Sequence) else (value,) * len(steps)

        return cls(tuple(steps), tuple(float(sampler.sigmas[i]) for i in steps), per_step(K), per_step(eps),
                   per_step(N), **kwargs)

    def with_K(self, K: Sequence[int]) -> SearchSchedule:
        return replace(self, K=tuple(int(k) for k in K))

    def check_matches(self, sampler: Sampler) -> None:
        """A one-line error unless this search schedule was made for the searchable steps of `sampler`."""
        ours = [round(s, 5) for s in self.sigmas]
        theirs = [round(float(sampler.sigmas[i]), 5) for i in sampler.searchable_steps()]
        if list(self.steps) != sampler.searchable_steps() or ours != theirs:
            raise NoiseSearchError(f"the search schedule was made for searchable sigmas {ours}, but this sampler's "
                                   f"are {theirs}; calibrate again for this sampler")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gains"] = [list(row) for row in self.gains] if self.gains is not None else None
        return {"format": SCHEDULE_FORMAT, **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchSchedule:
        """A schedule from its JSON data, of the current format or an older one (migrated)."""
        if isinstance(data, dict) and isinstance(data.get("format"), str) and data["format"] in MIGRATIONS:
            data = MIGRATIONS[data["format"]](data)
        if not isinstance(data, dict) or data.get("format") != SCHEDULE_FORMAT:
            raise NoiseSearchError(f"not a search schedule (expected format '{SCHEDULE_FORMAT}')")
        info = data.get("info", {})
        try:
            gains = data.get("gains")
            return cls(tuple(whole(s, "steps") for s in data["steps"]), tuple(float(s) for s in data["sigmas"]),
                       tuple(whole(k, "K") for k in data["K"]), tuple(float(e) for e in data["eps"]),
                       tuple(whole(n, "N") for n in data["N"]),
                       tuple(tuple(float(g) for g in row) for row in gains) if gains is not None else None,
                       dict(info) if isinstance(info, dict) else info)
        except (KeyError, TypeError, ValueError) as err:
            raise NoiseSearchError(f"malformed search schedule: {err}") from None

    def save(self, path: str | Path) -> None:
        """Write the schedule as JSON, atomically (a reader never sees half of it)."""
        write_atomically(Path(path), json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SearchSchedule:
        return cls.from_dict(read_json_file(Path(path), "search schedule"))

    def table(self) -> str:
        """A plain-text table, one row per searchable step."""
        lines = [f"{'step':>4} {'sigma':>9} {'K_t':>4} {'eps_t':>6} {'N_t':>4}" + ("  gain(k=1)" if self.gains else "")]
        for t, i in enumerate(self.steps):
            row = f"{i:>4} {self.sigmas[t]:>9.4f} {self.K[t]:>4} {self.eps[t]:>6.3f} {self.N[t]:>4}"
            if self.gains:
                row += f"  {self.gains[t][0]:>9.5f}" if self.gains[t] else f"  {'-':>9}"
            lines.append(row)
        return "\n".join(lines)
