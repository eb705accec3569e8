"""Bench presets: data (presets.json, or a JSON file of the user's) naming runs and reward columns.

A preset is checked when it is read: every value has its JSON type (an integer is no `true`, a number no
string), every field is known, no run appears twice and no two reward columns share a name (they would
share a cell and its files); any mistake is one NoiseSearchError line that names the preset.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from noisesearch.adaptive import CalibrationConfig
from noisesearch.backends import get_backend
from noisesearch.checks import is_json_int, is_json_number, shown_json
from noisesearch.errors import NoiseSearchError
from noisesearch.files import read_json_file
from noisesearch.naming import renamed_keys
from noisesearch.rewards import reward_names
from noisesearch.rewards.registry import parse_reward_args
from noisesearch.sampling import make_sampler
from noisesearch.sampling.schedules import MAX_STEPS
from noisesearch.search import algorithm_class, canonical_params, get_algorithm
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.seeds import check_seed

PRESET_FIELDS = ("name", "description", "runs", "rewards", "labels", "repeats", "steps", "calibration",
                 "target_nfes", "backend", "seed")
RENAMED_FIELDS = {"budgets": "target_nfes"}  # {old preset field: new}: preset files written before still load
RUN_FIELDS = ("algorithm", "params", "steps", "columns")
COLUMN_FIELDS = ("name", "reward", "guidance", "reward_args")
MAX_COUNT = 1000  # labels and repeats: bench_seed gives repeat r and label k of seed s the seed s·10⁶ + r·1000 + k
COLUMN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a column names files (schedules, plots): no separators
REQUIRED = object()


def escape_line_breaks(text: str) -> str:
    """`text` with line breaks written as escapes, so that an error quoting a user's value stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (is_json_int, "an integer"),
    "number": (is_json_number, "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "object": (lambda v: isinstance(v, dict), "a JSON object"),
}


def json_object(value: Any, fields: tuple[str, ...], where: str) -> dict[str, Any]:
    """`value` as a dict with only the given fields, or a one-line NoiseSearchError about `where`."""
    if not isinstance(value, dict):
        raise NoiseSearchError(f"{where} must be a JSON object, got {shown_json(value)}")
    unknown = [key for key in value if key not in fields]
    if unknown:
        raise NoiseSearchError(f"{where} has no field {', '.join(map(shown_json, unknown))}: it takes "
                               f"{', '.join(fields)}")
    return value


def typed(d: dict[str, Any], key: str, kind: str, where: str, default: Any = REQUIRED) -> Any:
    """d[key], which must be of `kind` (see KINDS; JSON true is no integer), or `default` where it is absent."""
    if key not in d:
        if default is REQUIRED:
            raise NoiseSearchError(f"{where} needs the \"{key}\" field")
        return default
    check, noun = KINDS[kind]
    if not check(d[key]):
        raise NoiseSearchError(f"{where}: \"{key}\" must be {noun}, got {shown_json(d[key])}")
    return d[key]


SIMPLE_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "bool": (lambda v: isinstance(v, bool), "true or false"), "int": (is_json_int, "an integer"),
    "float": (is_json_number, "a number"), "str": (lambda v: isinstance(v, str), "a string"),
    "None": (lambda v: v is None, "null"),
}


def check_field_types(cls: type, values: dict[str, Any], where: str) -> None:
    """A one-line NoiseSearchError for a value of a dataclass field annotated with a union of bool, int,
    float, str and None that has none of these types (so `"N": true` or `"eps": "x"` fails here, not in a
    comparison deep inside); fields of other annotations are left to the class's own checks."""
    for f in dataclasses.fields(cls):
        if f.name not in values or not isinstance(f.type, str):
            continue
        kinds = [kind.strip() for kind in f.type.split("|")]
        if all(kind in SIMPLE_TYPES for kind in kinds) and not any(SIMPLE_TYPES[k][0](values[f.name]) for k in kinds):
            wanted = " or ".join(SIMPLE_TYPES[kind][1] for kind in kinds)
            raise NoiseSearchError(f"{where}: {f.name} must be {wanted}, got {shown_json(values[f.name])}")


@dataclass(frozen=True)
class RewardColumn:
    """A column of the table: the reward searched and scored (built with `reward_args`, e.g. the url of a remote
    reward), and the guidance weight of sampling."""

    name: str
    reward: str
    guidance: float = 1.0
    reward_args: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def identity(self) -> dict[str, Any]:
        """What defines the column's reward, as cell keys and run.json name it (reward_args only where given, so
        that the keys of columns without them stay as they were)."""
        return {"reward": self.reward, "guidance": self.guidance,
                **({"reward_args": self.reward_args} if self.reward_args else {})}


CALIBRATED = "calibrated"  # a run's "search_schedule" parameter naming a schedule the bench calibrates


@dataclass(frozen=True)
class RunSpec:
    """A row: a registered algorithm with its parameters, the sampler steps it runs where they are not the
    preset's (Ma et al.'s baseline spends a search's NFE on more denoising steps instead), and the reward columns
    it runs in where not all (Ma et al. run random search with every verifier, the local searches with one)."""

    algorithm: str
    params: dict[str, Any]
    steps: int | None = None
    columns: tuple[str, ...] | None = field(default=None, compare=False)

    def runs_in(self, column: str) -> bool:
        """Whether this run has a cell in reward column `column`."""
        return self.columns is None or column in self.columns

    @classmethod
    def of(cls, record: dict[str, Any]) -> RunSpec:
        """The run a results.jsonl record belongs to (records of a run with its own steps say so in run_steps)."""
        return cls(record["algorithm"], record["params"], record.get("run_steps"))

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
    def own_steps(self) -> dict[str, int]:
        """{"steps": its steps} for a run with its own sampler steps, else {} (as records and labels show it)."""
        return {} if self.steps is None else {"steps": self.steps}

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in {**self.params, **self.own_steps}.items())
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
    target_nfes: tuple[int, ...] = ()  # NFE per image the runs are matched at (the report compares methods at each)
    backend: str = "embedded"  # the label backend whose model the cells run (bench --backend overrides it)
    seed: int = 0  # the bench seed, drawing its labels and sample seeds (bench --seed overrides it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, name: str, d: Any) -> Preset:
        """The preset `name` from its JSON data; a one-line NoiseSearchError naming the preset for a missing
        field, an unknown one, a value of the wrong type, or any check of `validate`. Old spellings (a field of
        RENAMED_FIELDS, an algorithm's renamed parameter) are read as the new ones, with a RenamedWarning."""
        where = escape_line_breaks(f"preset '{name}'")
        if isinstance(d, dict):
            d = renamed_keys(RENAMED_FIELDS, d, "bench preset")
        d = json_object(d, PRESET_FIELDS, where)
        runs = []
        for i, r in enumerate(typed(d, "runs", "list", where), 1):
            r = json_object(r, RUN_FIELDS, f"{where}, run {i}")
            algorithm = typed(r, "algorithm", "str", f"{where}, run {i}")
            params = typed(r, "params", "object", f"{where}, run {i}", {})
            try:
                params = canonical_params(algorithm, params)
            except NoiseSearchError as err:
                raise NoiseSearchError(escape_line_breaks(f"{where}: {err}")) from None
            steps = r.get("steps")  # null (as preset.json writes a run without its own): the preset's
            if steps is not None and not is_json_int(steps):
                raise NoiseSearchError(f"{where}, run {i}: \"steps\" must be an integer, got {shown_json(steps)}")
            only = r.get("columns")  # null or absent: every column
            if only is not None and (not isinstance(only, list) or not only
                                     or not all(isinstance(c, str) for c in only)):
                raise NoiseSearchError(f"{where}, run {i}: \"columns\" must be a non-empty list of reward column "
                                       f"names, got {shown_json(only)}")
            runs.append(RunSpec(algorithm, params, steps, None if only is None else tuple(only)))
        columns = []
        for i, c in enumerate(typed(d, "rewards", "list", where), 1):
            c = json_object(c, COLUMN_FIELDS, f"{where}, reward column {i}")
            columns.append(RewardColumn(typed(c, "name", "str", f"{where}, reward column {i}"),
                                        typed(c, "reward", "str", f"{where}, reward column {i}"),
                                        float(typed(c, "guidance", "number", f"{where}, reward column {i}", 1.0)),
                                        typed(c, "reward_args", "object", f"{where}, reward column {i}", {})))
        calibration = d.get("calibration")
        if calibration == {}:  # an empty entry is none, as it always was
            calibration = None
        if calibration is not None:
            calibration = calibration_config(calibration, f"{where}, calibration")
        preset = cls(
            name=name,
            description=typed(d, "description", "str", where, ""),
            runs=tuple(runs),
            rewards=tuple(columns),
            labels=typed(d, "labels", "int", where, 36),
            repeats=typed(d, "repeats", "int", where, 1),
            steps=typed(d, "steps", "int", where, 18),
            calibration=calibration,
            target_nfes=tuple(typed(d, "target_nfes", "list", where, [])),
            backend=typed(d, "backend", "str", where, "embedded"),
            seed=typed(d, "seed", "int", where, 0),
        )
        preset.validate()
        return preset

    def validate(self) -> None:
        """Raise a one-line NoiseSearchError naming the preset for an unknown algorithm or reward, parameters of
        the wrong type or value, a run given twice, two reward columns of one name, or bad counts."""
        where = escape_line_breaks(f"preset '{self.name}'")
        check_seed(self.seed, f"{where}: seed")
        for what, value in (("labels", self.labels), ("repeats", self.repeats), ("steps", self.steps)):
            if not is_json_int(value):
                raise NoiseSearchError(f"{where}: {what} must be an integer, got {shown_json(value)}")
        if self.labels < 1 or self.repeats < 1:
            raise NoiseSearchError(f"{where}: labels and repeats must be at least 1")
        for what, steps in (("steps", self.steps), *((f"run {r.label}: steps", r.steps) for r in self.runs
                                                     if r.steps is not None)):
            if steps < 1:
                raise NoiseSearchError(escape_line_breaks(f"{where}: {what} must be at least 1, got {steps}"))
            if steps > MAX_STEPS:
                raise NoiseSearchError(escape_line_breaks(f"{where}: {what} must be at most {MAX_STEPS:,}, got "
                                                          f"{steps}"))
        if self.labels > MAX_COUNT or self.repeats > MAX_COUNT:
            raise NoiseSearchError(f"{where}: labels and repeats must be at most {MAX_COUNT} (the bench's sample "
                                   "seeds would repeat)")
        if any(not is_json_int(b) or b < 1 for b in self.target_nfes):
            raise NoiseSearchError(f"{where}: target_nfes must be NFE per image, integers of at least 1, got "
                                   f"{shown_json(list(self.target_nfes))}")
        if not self.runs or not self.rewards:
            raise NoiseSearchError(f"{where} selects no runs or no reward columns")
        columns = [c.name for c in self.rewards]
        for column in self.rewards:
            if not COLUMN_NAME.fullmatch(column.name):
                raise NoiseSearchError(f"{where}: reward column name {shown_json(column.name)} must be letters, "
                                       "digits, '.', '_' or '-' (it names files)")
            if columns.count(column.name) > 1:
                raise NoiseSearchError(f"{where}: two reward columns are named '{column.name}': give each its own "
                                       "name (they would share a cell and its images)")
            if column.reward not in reward_names():
                raise NoiseSearchError(escape_line_breaks(f"{where}: unknown reward '{column.reward}'"))
            try:
                parse_reward_args(column.reward, column.reward_args)
            except NoiseSearchError as err:
                raise NoiseSearchError(escape_line_breaks(f"{where}, reward column '{column.name}': {err}")) from None
            if not math.isfinite(column.guidance):
                raise NoiseSearchError(f"{where}: reward column '{column.name}' has guidance {column.guidance}")
        seen = set()
        for run in self.runs:
            unknown = sorted(set(run.columns or ()) - set(columns))
            if unknown:
                raise NoiseSearchError(escape_line_breaks(f"{where}: run {run.label} names reward column(s) "
                                                          f"{', '.join(unknown)}, which the preset does not have"))
            named = run.params.get("search_schedule")
            if named is not None and not isinstance(named, str):
                raise NoiseSearchError(escape_line_breaks(
                    f"{where}: run {run.label}: search_schedule must be \"{CALIBRATED}\", \"{CALIBRATED}:COLUMN\" or "
                    f"the path of a schedule file, got {shown_json(named)}"))
            if run.steps is not None and run.calibrated_column(self.rewards[0].name) is not None:
                raise NoiseSearchError(escape_line_breaks(f"{where}: run {run.label}: a calibrated schedule is made "
                                                          "for the preset's steps: drop the run's own steps"))
            identity = json.dumps([run.algorithm, run.params, run.steps], sort_keys=True, default=repr)
            if identity in seen:
                raise NoiseSearchError(escape_line_breaks(f"{where}: run {run.label} is listed twice: remove the copy "
                                                          "(more seeds per label are \"repeats\")"))
            seen.add(identity)
        try:
            backend = get_backend(self.backend)
        except NoiseSearchError as err:
            raise NoiseSearchError(escape_line_breaks(f"{where}: {err}")) from None
        if backend.conditions != "labels":
            raise NoiseSearchError(f"{where}: bench draws class labels; the {self.backend} backend takes prompts")
        sampler = make_sampler(backend.default_sampler, self.steps)
        placeholder = SearchSchedule.uniform(sampler, 1, 0.5, 1, gains=((1.0,),) * len(sampler.searchable_steps()))
        for run in self.runs:
            for column in columns:
                source = run.calibrated_column(column)
                if source is not None and self.calibration is None:
                    raise NoiseSearchError(escape_line_breaks(f"{where}: {run.label} needs a \"calibration\" entry"))
                if source is not None and source not in columns:
                    raise NoiseSearchError(escape_line_breaks(f"{where}: {run.label} names no reward column of the "
                                                              "preset"))
                try:
                    check_field_types(algorithm_class(run.algorithm), run.params, f"run {run.label}")
                    get_algorithm(run.algorithm, **run.algorithm_params({source: placeholder}, column))
                except (NoiseSearchError, TypeError, ValueError) as err:
                    raise NoiseSearchError(escape_line_breaks(f"{where}: {err}")) from None

    def calibrated_columns(self) -> list[str]:
        """Columns whose calibrated schedules some run uses, in column order."""
        needed = {run.calibrated_column(c.name) for run in self.runs for c in self.rewards}
        return [c.name for c in self.rewards if c.name in needed]


def calibration_config(d: Any, where: str) -> CalibrationConfig:
    """A CalibrationConfig from JSON data; a one-line NoiseSearchError naming `where` for an unknown field, a value
    of the wrong type, or any check of the config."""
    d = json_object(d, tuple(f.name for f in dataclasses.fields(CalibrationConfig)), where)
    check_field_types(CalibrationConfig, d, where)
    try:
        return CalibrationConfig(**d)
    except (NoiseSearchError, TypeError, ValueError) as err:
        raise NoiseSearchError(escape_line_breaks(f"{where}: {err}")) from None


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
        data = read_json_file(path, "preset file")
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
             labels: int | None = None, repeats: int | None = None,
             calibration: dict[str, Any] | None = None) -> Preset:
    """The preset restricted to some algorithms and reward columns (dropping runs that use the schedule of a
    column left out), with other label and repeat counts, and its calibration's fields changed as `calibration`
    says (JSON values by field name)."""
    if calibration:
        if preset.calibration is None:
            raise NoiseSearchError(f"preset '{preset.name}' calibrates nothing, so it has no calibration to change")
        preset = replace(preset, calibration=calibration_config(asdict(preset.calibration) | calibration,
                                                                f"preset '{preset.name}', changed calibration"))
    runs = select(preset.runs, algorithms, lambda r: r.algorithm, f"preset '{preset.name}' has no run of")
    columns = select(preset.rewards, rewards, lambda c: c.name, f"preset '{preset.name}' has no reward column")
    kept = {c.name for c in columns}
    runs = tuple(r for r in runs if all(r.calibrated_column(c) in (None, *kept) for c in kept))
    runs = tuple(r if r.columns is None else replace(r, columns=tuple(c for c in r.columns if c in kept))
                 for r in runs if r.columns is None or kept & set(r.columns))
    changed = replace(preset, runs=runs, rewards=columns,
                      labels=preset.labels if labels is None else labels,
                      repeats=preset.repeats if repeats is None else repeats)
    changed.validate()
    return changed
