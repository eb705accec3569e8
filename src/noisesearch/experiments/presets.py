"""Bench presets: data (presets.json, or a JSON file of the user's) naming runs and reward columns."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from noisesearch.adaptive import CalibrationConfig
from noisesearch.errors import NoiseSearchError
from noisesearch.rewards import reward_names
from noisesearch.sampling import make_sampler
from noisesearch.search import get_algorithm
from noisesearch.search.step_schedule import SearchSchedule


@dataclass(frozen=True)
class RewardColumn:
    """A column of the table: the reward searched and scored, and the guidance weight of sampling."""

    name: str
    reward: str
    guidance: float = 1.0


CALIBRATED = "calibrated"  # a run's "search_schedule" parameter naming a schedule the bench calibrates


@dataclass(frozen=True)
class RunSpec:
    """A row: a registered algorithm with its parameters."""

    algorithm: str
    params: dict[str, Any]

    def calibrated_column(self, column: str) -> str | None:
        """The column whose calibrated schedule this run uses in `column`, or None."""
        named = self.params.get("search_schedule")
        if not isinstance(named, str) or not named.startswith(CALIBRATED):
            return None
        source = named[len(CALIBRATED):].lstrip(":")
        return source or column

    def algorithm_params(self, schedules: dict[str, Any], column: str) -> dict[str, Any]:
        """Parameters for get_algorithm, with a calibrated schedule replaced by `schedules[its column]`."""
        source = self.calibrated_column(column)
        return self.params if source is None else {**self.params, "search_schedule": schedules[source]}

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.algorithm} ({shown})" if shown else self.algorithm


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    runs: tuple[RunSpec, ...]
    rewards: tuple[RewardColumn, ...]
    labels: int = 36
    repeats: int = 1
    steps: int = 18
    calibration: CalibrationConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, name: str, d: dict[str, Any]) -> Preset:
        try:
            preset = cls(
                name=name,
                description=d.get("description", ""),
                runs=tuple(RunSpec(r["algorithm"], dict(r.get("params", {}))) for r in d["runs"]),
                rewards=tuple(RewardColumn(c["name"], c["reward"], float(c.get("guidance", 1.0)))
                              for c in d["rewards"]),
                labels=int(d.get("labels", 36)),
                repeats=int(d.get("repeats", 1)),
                steps=int(d.get("steps", 18)),
                calibration=CalibrationConfig(**d["calibration"]) if d.get("calibration") else None,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise NoiseSearchError(f"preset '{name}' is malformed ({err!r}): see experiments/presets.json") from None
        preset.validate()
        return preset

    def validate(self) -> None:
        """Raise a NoiseSearchError for an unknown algorithm or reward, or bad parameters or counts."""
        columns = [c.name for c in self.rewards]
        sampler = make_sampler("heun", self.steps)
        placeholder = SearchSchedule.uniform(sampler, 1, 0.5, 1, gains=((1.0,),) * len(sampler.searchable_steps()))
        for run in self.runs:
            for column in columns:
                source = run.calibrated_column(column)
                if source is not None and self.calibration is None:
                    raise NoiseSearchError(f"preset '{self.name}': {run.label} needs a \"calibration\" entry")
                if source is not None and source not in columns:
                    raise NoiseSearchError(f"preset '{self.name}': {run.label} names no reward column of the preset")
                get_algorithm(run.algorithm, **run.algorithm_params({source: placeholder}, column))
        for column in self.rewards:
            if column.reward not in reward_names():
                raise NoiseSearchError(f"preset '{self.name}': unknown reward '{column.reward}'")
        if self.labels < 1 or self.repeats < 1:
            raise NoiseSearchError(f"preset '{self.name}': labels and repeats must be at least 1")
        if not self.runs or not self.rewards:
            raise NoiseSearchError(f"preset '{self.name}' selects no runs or no reward columns")

    def calibrated_columns(self) -> list[str]:
        """Columns whose calibrated schedules some run uses, in column order."""
        needed = {run.calibrated_column(c.name) for run in self.runs for c in self.rewards}
        return [c.name for c in self.rewards if c.name in needed]


def builtin_presets() -> dict[str, Preset]:
    text = (resources.files("noisesearch") / "experiments" / "presets.json").read_text()
    return {name: Preset.from_dict(name, d) for name, d in json.loads(text).items()}


def get_preset(name_or_path: str) -> Preset:
    """A built-in preset by name, or the single preset in a JSON file (a {name: preset} mapping)."""
    presets = builtin_presets()
    if name_or_path in presets:
        return presets[name_or_path]
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise NoiseSearchError(f"preset file {path} is not valid JSON ({err.msg}, line {err.lineno})") from None
        if not isinstance(data, dict) or len(data) != 1:
            raise NoiseSearchError(f"preset file {path} must hold one {{name: preset}} mapping")
        (name, d), = data.items()
        return Preset.from_dict(name, d)
    raise NoiseSearchError(f"unknown preset '{name_or_path}': choose one of {', '.join(presets)} or a .json file")


def select(items: tuple, names: list[str] | None, key: Callable[[Any], str], missing: str) -> tuple:
    """The items whose key is in `names` (all if names is None); a NoiseSearchError names unknown ones."""
    if names is None:
        return items
    known = list(dict.fromkeys(key(item) for item in items))
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise NoiseSearchError(f"{missing} {', '.join(unknown)}: it has {', '.join(known)}")
    return tuple(item for item in items if key(item) in names)


def override(preset: Preset, algorithms: list[str] | None = None, rewards: list[str] | None = None,
             labels: int | None = None, repeats: int | None = None) -> Preset:
    """The preset restricted to some algorithms and reward columns (dropping runs that use the schedule of a
    column left out), with other label and repeat counts."""
    runs = select(preset.runs, algorithms, lambda r: r.algorithm, f"preset '{preset.name}' has no run of")
    columns = select(preset.rewards, rewards, lambda c: c.name, f"preset '{preset.name}' has no reward column")
    kept = {c.name for c in columns}
    runs = tuple(r for r in runs if all(r.calibrated_column(c) in (None, *kept) for c in kept))
    changed = replace(preset, runs=runs, rewards=columns,
                      labels=preset.labels if labels is None else labels,
                      repeats=preset.repeats if repeats is None else repeats)
    changed.validate()
    return changed
