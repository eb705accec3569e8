"""The run directory of a bench: its files, format, lock, record checks, resume and reuse.

A run directory holds
- run.json: the settings every cell shares (preset, seed, steps, sampler, backend, model, max_batch, device,
  calibration, the definition of each column, the feature extractor and the reference of the population
  metrics) and the directory's format version; a resume with other settings is refused;
- results.jsonl: one JSON record per (cell, label), appended one cell at a time in a single fsynced write, so a
  run killed at any moment loses at most the cell in flight; records are validated when read (one-line error
  naming file and line) and de-duplicated by (cell key, label index), the first kept; a torn last line (a
  kill mid-write) is skipped when reading, and only the writer holding the lock cuts it off before appending;
- cells.jsonl: one line per cell run (done or failed with its error, where it ran, its times);
- images/, traces/ and features/: one .npz per finished cell (features: each image's features under the run's
  extractor, float16, and its logits, with the label indices, for FID, KID, IS and precision/recall);
  schedules/: calibrated search schedules;
- preset.json and environment.jsonl: the preset as run, and the environment of every start;
- bench.lock: held (flock, exclusive) by the one writer for its whole run.

A cell's key (see cells.Cell.key) names everything that determines its records; a resume or `--reuse` takes a
record only where its key matches exactly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from noisesearch.checks import is_finite_number, is_json_int, shown_json
from noisesearch.environment import environment
from noisesearch.errors import NoiseSearchError
from noisesearch.executors import Executor, Outcome
from noisesearch.experiments.presets import RENAMED_FIELDS, Preset
from noisesearch.files import exclusive_lock, write_atomically
from noisesearch.outputs import prepare_out_dir
from noisesearch.search import algorithm_class, algorithm_names
from noisesearch.seeds import bench_seed

RESULTS = "results.jsonl"

SETTINGS = "run.json"  # the settings every cell of a run directory shares

LOCK = "bench.lock"  # held (flock, exclusive) by the one bench writing to the directory

CELL_LOG = "cells.jsonl"  # one line per cell run: done or failed (with its error), where it ran, its times

CELL_FOLDERS = ("images", "traces", "features")  # one .npz per finished cell in each (traces, features: if any)

FORMAT = 4  # of a run directory, kept in run.json; older ones are migrated (see migrate_run_dir)
OLDEST = 2  # the oldest format whose records can be matched to cells (format 1 kept no run.json)


def is_str(value: Any) -> bool:
    return isinstance(value, str)


RECORD_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "cell": (is_str, "a string"), "algorithm": (is_str, "a string"),
    "params": (lambda v: isinstance(v, dict), "a JSON object"), "column": (is_str, "a string"),
    "reward": (is_str, "a string"), "guidance": (lambda v: is_finite_number(v), "a finite number"),
    "repeat": (lambda v: is_json_int(v) and v >= 0, "an integer of at least 0"),
    "label_index": (lambda v: is_json_int(v) and v >= 0, "an integer of at least 0"),
    "label": (is_json_int, "an integer"), "seed": (is_json_int, "an integer"),
    "reward_value": (lambda v: is_finite_number(v), "a finite number"),
    "evaluator": (lambda v: v is None or is_finite_number(v), "a finite number or null"),
    "nfe": (lambda v: is_json_int(v) and v >= 0, "an integer of at least 0"),
    "wall_time_s": (lambda v: is_finite_number(v) and v >= 0, "a finite number of at least 0"),
    "steps": (is_json_int, "an integer"),
}


def check_record(record: Any, where: str) -> dict[str, Any]:
    """The record of one results.jsonl line, or a one-line NoiseSearchError naming `where` (file and line)."""
    hint = "fix or delete the line; bench reruns what is missing"
    if not isinstance(record, dict):
        raise NoiseSearchError(f"{where}: a record must be a JSON object, got {shown_json(record)} ({hint})")
    for name, (check, noun) in RECORD_FIELDS.items():
        if name not in record:
            raise NoiseSearchError(f"{where}: the record has no \"{name}\" ({hint})")
        if not check(record[name]):
            raise NoiseSearchError(f"{where}: \"{name}\" must be {noun}, got {shown_json(record[name])} ({hint})")
    return record


@dataclass(frozen=True)
class Results:
    """The records of a results file: valid, unique by (cell key, label index) (the first kept), and how
    many duplicate lines were dropped and whether an unterminated last line was skipped."""

    records: list[dict[str, Any]]
    duplicates: int = 0
    torn: bool = False


def load_results(path: Path) -> Results:
    """Read results.jsonl without writing to it: every complete line is validated (a malformed one is a
    one-line NoiseSearchError naming file and line), duplicates of (cell, label_index) are dropped keeping
    the first, and a torn last line (no trailing newline: a kill mid-write, or a bench still writing) is
    skipped."""
    if not path.exists():
        return Results([])
    try:
        data = path.read_bytes()
    except OSError as err:
        raise NoiseSearchError(f"cannot read {path} ({err.strerror})") from None
    end = data.rfind(b"\n") + 1
    records, seen, duplicates = [], set(), 0
    for n, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        if not line.strip():
            continue
        where = f"{path}, line {n}"
        try:
            record = check_record(json.loads(line), where)
        except UnicodeDecodeError:
            raise NoiseSearchError(f"{where}: not UTF-8 text (fix or delete the line)") from None
        except json.JSONDecodeError as err:
            raise NoiseSearchError(f"{where}: not a JSON record ({err.msg} at column {err.colno}); fix or delete "
                                   "the line") from None
        except RecursionError:
            raise NoiseSearchError(f"{where}: not a record (JSON nested too deeply to read); fix or delete the "
                                   "line") from None
        identity = (record["cell"], record["label_index"])
        if identity in seen:
            duplicates += 1
            continue
        seen.add(identity)
        records.append(record)
    return Results(records, duplicates, bool(data[end:].strip()))


def read_results(path: Path) -> list[dict[str, Any]]:
    """The valid, unique records of results.jsonl (see load_results); the file is never written."""
    return load_results(path).records


def cut_torn_line(path: Path) -> bool:
    """Cut an unterminated last line off results.jsonl before appending to it; only the writer holding the
    run directory's lock may call this. Returns whether there was one."""
    if not path.exists():
        return False
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end == len(data):
        return False
    with path.open("r+b") as f:
        f.truncate(end)
    return True


@contextmanager
def run_dir_lock(out: Path) -> Iterator[None]:
    """Create the run directory `out` and hold an exclusive lock on its LOCK file while the block runs, or
    raise a one-line NoiseSearchError if another process holds it (the lock goes with the process, even if
    it is killed; the file stays)."""
    if out.exists() and not out.is_dir():
        raise NoiseSearchError(f"--out {out} is a file: give a directory for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / LOCK).touch()
    except OSError as err:
        raise NoiseSearchError(f"cannot write to --out {out} ({err.strerror}): choose a writable directory") from None
    busy = f"another bench is writing to {out}: let it finish, or use another --out"
    with exclusive_lock(out / LOCK, busy):
        yield


def run_settings(preset: Preset, seed: int, sampler: str, backend: str, model: str | None, max_batch: int,
                 device: str = "cpu", extractor: str | None = None, reference: str | None = None,
                 dtype: str = "float32") -> dict[str, Any]:
    """What every cell of a run shares, as run.json keeps it (JSON values only); `extractor` and `reference` name
    the feature extractor the cells keep features under and the reference set the report compares them with."""
    return json.loads(json.dumps({
        "format": FORMAT, "preset": preset.name, "seed": seed, "steps": preset.steps, "sampler": sampler,
        "backend": backend, "model": model, "max_batch": max_batch, "device": device, "dtype": dtype,
        "calibration": None if preset.calibration is None else preset.calibration.identity(),
        "columns": {c.name: c.identity for c in preset.rewards},
        "extractor": extractor, "reference": reference,
    }))


SHARED = ("format", "preset", "seed", "steps", "sampler", "backend", "model", "max_batch", "device", "dtype",
          "calibration")
UNSTATED = {"dtype": "float32"}  # what a setting was where run.json predates it


def setting_of(settings: dict[str, Any], name: str) -> Any:
    """A shared setting of run.json (its UNSTATED value, else None, where it has none)."""
    return settings.get(name, UNSTATED.get(name))


def cell_slug(algorithm: str, params: dict[str, Any], column: str, repeat: int, steps: int | None = None) -> str:
    """File-name stem of a cell's images, traces, features and grid: letters, digits, '.', '_' and '-' only (a
    schedule named 'calibrated:COLUMN' becomes 'calibrated-COLUMN'), so that every OS can hold it; a run with its
    own sampler `steps` ends its parameters with steps<n>."""
    shown_params = "_".join(f"{k}{v}" for k, v in {**params, **({} if steps is None else {"steps": steps})}.items())
    name = f"{algorithm}{'_' + shown_params if shown_params else ''}__{column}__r{repeat}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)


# Migrations, one per format step: each turns what a directory of the format before holds into what it holds now.
# 2 -> 3: run.json names its device (directories of format 2 without one ran on the CPU), and algorithm
#         parameters carry their current names (an algorithm class's `renamed`) in records, cell keys, file names
#         and preset.json (whose `budgets` are now `target_nfes`).
# 3 -> 4: cells keep each image's features (features/), and run.json names the extractor and the reference:
#         null in a directory of format 3, whose cells kept none (the report shows "—" for their metrics); a
#         resume keeps features of new cells under the extractor it names.


def current_params(algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` with renamed parameters under their current names, in their order (silently: a stored file is not
    the user's spelling)."""
    renamed = algorithm_class(algorithm).renamed if algorithm in algorithm_names() else {}
    return {renamed.get(k, k): v for k, v in params.items()}


def migrated_record(record: dict[str, Any], fmt: int) -> dict[str, Any]:
    """A results.jsonl record of a directory of format `fmt`, as the current format writes it."""
    if fmt >= 3:
        return record
    identity = json.loads(record["cell"])
    identity["params"] = current_params(identity["algorithm"], identity["params"])
    return {**record, "cell": json.dumps(identity, sort_keys=True),
            "params": current_params(record["algorithm"], record["params"]),
            "batch_invariant": record.get("batch_invariant", True)}  # bench ran no other mode before it said so


def migrated_preset(data: Any, fmt: int) -> Any:
    """preset.json's data ({"preset": ..., "seed": ...}) of a directory of format `fmt` as the current format
    writes it; data of another shape is left for Preset.from_dict to refuse."""
    if fmt >= 3 or not isinstance(data, dict) or not isinstance(data.get("preset"), dict):
        return data
    preset = {RENAMED_FIELDS.get(k, k): v for k, v in data["preset"].items()}
    if isinstance(preset.get("runs"), list):
        preset["runs"] = [{**r, "params": current_params(r["algorithm"], r["params"])}
                          if isinstance(r, dict) and isinstance(r.get("algorithm"), str)
                          and isinstance(r.get("params"), dict) else r for r in preset["runs"]]
    return {**data, "preset": preset}


def migrated_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """run.json of an older format as the current format writes it."""
    if settings.get("format", 1) < 3:
        settings = {**settings, "device": settings.get("device", "cpu"), "format": 3}
    if settings["format"] < 4:
        settings = {**settings, "extractor": None, "reference": None, "format": 4}
    return settings


def renamed_slugs(records: list[dict[str, Any]]) -> dict[str, str]:
    """{current slug: slug in the directory} of the cells whose file names a migration changes (records as stored)."""
    slugs = {}
    for r in records:
        old = cell_slug(r["algorithm"], r["params"], r["column"], r["repeat"])
        new = cell_slug(r["algorithm"], current_params(r["algorithm"], r["params"]), r["column"], r["repeat"])
        if new != old:
            slugs[new] = old
    return slugs


def stored_records(directory: Path) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The valid, unique records of a run directory as the current format writes them (read, never written),
    and {current slug: slug of its files} where a migration renames them."""
    settings = read_settings(directory) or {}
    fmt = settings.get("format", 1)
    records = read_results(directory / RESULTS)
    if fmt < OLDEST or fmt == FORMAT:  # records of a format before OLDEST match no cell key, migrated or not
        return records, {}
    return [migrated_record(r, fmt) for r in records], renamed_slugs(records)


def migrate_run_dir(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the run directory `out` (of run.json `settings`, an older format) in the current format, each file
    atomically, and return its migrated settings; the caller holds the directory's lock. A directory killed
    mid-migration is migrated again from what it holds (file renames are idempotent)."""
    fmt = settings.get("format", 1)
    results = load_results(out / RESULTS)
    for new, old in renamed_slugs(results.records).items():
        for folder in CELL_FOLDERS:
            for part in (out / folder).glob(f"{old}_*.npz"):
                part.replace(part.with_name(new + part.name[len(old):]))
    if (out / "preset.json").is_file():
        preset = migrated_preset(read_json(out / "preset.json"), fmt)
        write_atomically(out / "preset.json", json.dumps(preset, indent=2) + "\n")
    if results.records:
        write_atomically(out / RESULTS, "".join(json.dumps(migrated_record(r, fmt)) + "\n" for r in results.records))
    settings = migrated_settings(settings)
    write_atomically(out / SETTINGS, json.dumps(settings, indent=2) + "\n")
    return settings


def read_settings(directory: Path, hint: str = "") -> dict[str, Any] | None:
    """The run.json of a bench run directory, None where there is none; a one-line NoiseSearchError (ending
    in `hint`) where it cannot be read."""
    path = directory / SETTINGS
    if not path.exists():
        return None
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NoiseSearchError(f"{path} is unreadable ({err}){hint}") from None
    except RecursionError:
        raise NoiseSearchError(f"{path} is unreadable (JSON nested too deeply){hint}") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("columns"), dict):
        raise NoiseSearchError(f"{path} is not the settings of a bench run{hint}")
    return settings


def resume_settings(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings to keep in out/run.json: `settings`, with the columns of earlier starts; a one-line
    NoiseSearchError if the directory holds a run of other settings (another seed, steps, sampler, backend,
    model, max_batch, preset or calibration, or a column of this name defined otherwise), or one of a format
    older than OLDEST. A directory of a format between is migrated to the current one (the caller holds its
    lock)."""
    stored = read_settings(out, ": use another --out")
    fmt = 1 if stored is None else stored.get("format", 1)
    if stored is None and not (out / "preset.json").exists() and not load_results(out / RESULTS).records:
        return settings  # a new run directory
    if fmt < OLDEST:
        raise NoiseSearchError(f"{out} holds a bench run of format {fmt}, whose records cannot be matched to cells "
                               f"(its keys lack settings): use another --out")
    theirs = migrated_settings(stored)
    differ = [f"{name} {shown_json(setting_of(theirs, name))}, not {shown_json(settings[name])}"
              for name in SHARED if setting_of(theirs, name) != settings[name]]
    if theirs["extractor"] not in (None, settings["extractor"]):  # null: its cells kept no features
        differ.append(f"extractor {shown_json(theirs['extractor'])}, not {shown_json(settings['extractor'])}")
    differ += [f"column {name} {shown_json(theirs['columns'][name])}, not {shown_json(column)}"
               for name, column in settings["columns"].items()
               if name in theirs["columns"] and theirs["columns"][name] != column]
    if differ:
        raise NoiseSearchError(f"{out} holds a bench run with other settings ({'; '.join(differ)}): use another "
                               "--out for this one")
    if fmt < FORMAT:
        migrate_run_dir(out, stored)
    return {**settings, "columns": {**theirs["columns"], **settings["columns"]}}


def prepare_run_dir(out: Path, preset: Preset, seed: int, settings: dict[str, Any]) -> None:
    """Write run.json, preset.json and a line of environment.jsonl, make the folders, and cut a torn last
    line off results.jsonl; the caller holds the directory's lock."""
    prepare_out_dir(out, CELL_FOLDERS, hint="a directory for the run")
    write_atomically(out / SETTINGS, json.dumps(settings, indent=2) + "\n")
    write_atomically(out / "preset.json", json.dumps({"preset": preset.to_dict(), "seed": seed}, indent=2) + "\n")
    history = out / "environment.jsonl"
    with history.open("a") as f:
        f.write(json.dumps(environment(settings["device"])) + "\n")
    cut_torn_line(out / RESULTS)


class StoredCell(Protocol):
    """What the store knows of a cell: the key its records carry and the file-name stem of its images."""

    @property
    def key(self) -> str: ...

    @property
    def slug(self) -> str: ...


def write_cell(out: Path, cell: StoredCell, label_indices: Sequence[int], images: np.ndarray,
               trace: dict[str, np.ndarray] | None, lines: Sequence[str],
               features: dict[str, np.ndarray] | None = None) -> None:
    """Save a finished cell's images (uint8), trace columns and image features (with their label indices), then
    append its records (one JSON line per label, in order) in one write (fsynced)."""
    stem = f"{cell.slug}_{label_indices[0]:03d}.npz"
    np.savez_compressed(out / "images" / stem, images=images, label_index=np.array(label_indices))
    if trace is not None:
        np.savez_compressed(out / "traces" / stem, **trace)
    if features is not None:
        np.savez_compressed(out / "features" / stem, **features, label_index=np.array(label_indices))
    with (out / RESULTS).open("a") as f:
        f.write("".join(lines))
        f.flush()
        os.fsync(f.fileno())


def log_cell(out: Path, cell: StoredCell, label_indices: Sequence[int], outcome: Outcome, executor: Executor
             ) -> None:
    """Append a line to out/cells.jsonl: how the cell went (done or failed, with its error), where it ran and
    how long it took."""
    line = {"cell": cell.key, "slug": cell.slug, "label_indices": list(label_indices),
            "status": "done" if outcome.ok else "failed", "error": outcome.error, "traceback": outcome.traceback,
            "attempts": outcome.attempts, **executor.describe(), "worker": outcome.worker,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with (out / CELL_LOG).open("a") as f:
        f.write(json.dumps(line) + "\n")


def check_reuse_source(source: Path, read: bool = False) -> None:
    """A one-line NoiseSearchError unless `source` is a bench run directory (it has results) and (`read`) its
    run.json and every record can be read (so that a bench refuses a malformed source before writing)."""
    if not (source / RESULTS).is_file():
        raise NoiseSearchError(f"--reuse {source}: no {RESULTS} there (not a bench run directory)")
    if read:
        stored_records(source)


RUN_FILES = (RESULTS, SETTINGS, LOCK, CELL_LOG, "preset.json", "environment.jsonl")


def check_run_files(out: Path) -> None:
    """A one-line NoiseSearchError where a file the run directory `out` keeps is a directory."""
    for name in RUN_FILES:
        if (out / name).is_dir():
            raise NoiseSearchError(f"{out / name} is a directory, not the file a bench run keeps there: remove it or "
                                   "use another --out")


def copy_schedules(source: Path, out: Path, settings: dict[str, Any], columns: Sequence[str]) -> list[str]:
    """Copy into out/schedules the schedules that `source` (another bench run directory) calibrated as a run of
    `settings` (see run_settings) would: same calibration, steps, sampler, backend, model and max_batch (its
    run.json's) and the same column (reward, guidance), for each of `columns`; returns those copied.
    Directories without run.json give none."""
    stored = read_settings(source) if source.is_dir() else None
    theirs = None if stored is None else migrated_settings(stored)
    if settings["calibration"] is None or theirs is None:
        return []
    if any(setting_of(theirs, name) != settings[name]
           for name in ("calibration", "steps", "sampler", "backend", "model", "max_batch", "device", "dtype")):
        return []
    copied = []
    for column in columns:
        made, wanted = source / "schedules" / f"{column}.json", out / "schedules" / f"{column}.json"
        if made.is_file() and not wanted.exists() and theirs["columns"].get(column) == settings["columns"][column]:
            wanted.parent.mkdir(exist_ok=True)
            shutil.copyfile(made, wanted)
            copied.append(column)
    return copied


def copy_results(source: Path, out: Path, cells: Sequence[StoredCell], labels: list[int], seed: int) -> int:
    """Append to out's results the records of `source` (another bench run directory) whose cell key is one of
    `cells`' (so the same settings: see cells.Cell.key) with the same label and sample seed that `out` lacks, with
    their images and traces; returns how many were copied. Bench records are batch-invariant (a record of another
    mode is never taken), so these are the records a rerun would write. A source of an older format is read as
    migrated (see stored_records) and left as it is."""
    check_reuse_source(source)
    if source.resolve() == out.resolve():
        return 0
    keys = {cell.key: cell for cell in cells}
    done = {(r["cell"], r["label_index"]) for r in read_results(out / RESULTS)}
    records, stored_slugs = stored_records(source)
    take = [r for r in records
            if r["cell"] in keys and r.get("batch_invariant") is True
            and (r["cell"], r["label_index"]) not in done and r["label_index"] < len(labels)
            and r["label"] == labels[r["label_index"]]
            and r["seed"] == bench_seed(seed, r["repeat"], r["label_index"])]
    if not take:
        return 0
    wanted: dict[str, set[int]] = defaultdict(set)
    for r in take:
        wanted[keys[r["cell"]].slug].add(r["label_index"])
    folders = [("images", lambda d: d["label_index"]), ("traces", lambda d: d["condition"])]
    theirs = read_settings(source) or {}
    if theirs.get("extractor") is not None and theirs["extractor"] == (read_settings(out) or {}).get("extractor"):
        folders.append(("features", lambda d: d["label_index"]))  # features of another extractor are not taken
    for folder, index_of in folders:
        for slug, indices in wanted.items():
            stored = stored_slugs.get(slug, slug)
            for part in sorted((source / folder).glob(f"{stored}_*.npz")):
                with np.load(part) as data:
                    keep = np.isin(index_of(data), sorted(indices))
                    if keep.any():
                        np.savez_compressed(out / folder / f"{slug}{part.stem[len(stored):]}_reused.npz",
                                            **{name: data[name][keep] for name in data.files})
    with (out / RESULTS).open("a") as f:
        f.write("".join(json.dumps({**r, "reused_from": str(source)}) + "\n" for r in take))
        f.flush()
        os.fsync(f.fileno())
    return len(take)


@dataclass
class Run:
    """A bench run directory as readers see it: its records (validated, unique, migrated to the current format in
    memory), preset and seed, environment of the last start and run.json (None where it has none); how many
    duplicate lines and whether a torn last line were left out; {current slug: slug of its files} where an older
    format named them otherwise."""

    directory: Path
    records: list[dict[str, Any]]
    preset: Preset | None
    seed: int | None
    environment: dict[str, Any]
    duplicates: int = 0  # duplicate lines of results.jsonl left out (the first record of a cell and label counts)
    torn: bool = False  # whether an unterminated last line was left out
    settings: dict[str, Any] | None = None  # run.json (None where the directory has none)
    slugs: dict[str, str] = field(default_factory=dict)
    reference: str | None = None  # the reference features of population metrics (name or path; default run.json's)
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # what readers computed once

    def cell_files(self, folder: str, slug: str) -> list[Path]:
        """The .npz files of a cell's images or traces (`folder`), in name order."""
        stored = self.slugs.get(slug, slug)
        return sorted((self.directory / folder).glob(f"{stored}_*.npz"))

    def schedule(self, name: str) -> dict[str, Any] | None:
        """The calibrated schedule schedules/NAME.json as JSON data (None where there is none)."""
        path = self.directory / "schedules" / f"{name}.json"
        return read_json(path) if path.is_file() else None

    def schedules(self) -> dict[str, dict[str, Any]]:
        """Every calibrated schedule of the run, by name, in name order."""
        return {p.stem: read_json(p) for p in sorted((self.directory / "schedules").glob("*.json"))}


def read_json(path: Path, lines: bool = False) -> Any:
    """A JSON file of the run directory (lines: the last line of a JSON-lines file), or a one-line error."""
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text.splitlines()[-1] if lines else text) if text.strip() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NoiseSearchError(f"cannot read {path} ({err})") from None
    except RecursionError:
        raise NoiseSearchError(f"cannot read {path} (JSON nested too deeply)") from None


def load_run(directory: Path) -> Run:
    """Read a bench run directory (results, preset, settings and environment) without running or writing
    anything; records are read as load_results reads them (a report may run while a bench is still writing)."""
    directory = Path(directory)
    if not (directory / RESULTS).is_file():
        raise NoiseSearchError(f"{directory} holds no {RESULTS}: give a directory written by `noisesearch bench`")
    settings = read_json(directory / SETTINGS) if (directory / SETTINGS).exists() else None
    fmt = 1 if settings is None else settings.get("format", 1)
    preset, seed = None, None
    if (directory / "preset.json").exists():
        meta = migrated_preset(read_json(directory / "preset.json"), fmt)
        try:
            preset = Preset.from_dict(meta["preset"]["name"], meta["preset"])
            seed = meta["seed"]
        except (KeyError, TypeError) as err:
            raise NoiseSearchError(f"{directory / 'preset.json'} is not a bench preset ({err!r})") from None
        except NoiseSearchError as err:
            raise NoiseSearchError(f"{directory / 'preset.json'}: {err}") from None
    env_path = directory / "environment.jsonl"
    environment = read_json(env_path, lines=True) if env_path.exists() else {}
    results = load_results(directory / RESULTS)
    records, slugs = results.records, {}
    if OLDEST <= fmt < FORMAT:
        records, slugs = [migrated_record(r, fmt) for r in records], renamed_slugs(records)
    return Run(directory, records, preset, seed, environment, results.duplicates, results.torn, settings, slugs,
               (settings or {}).get("reference"))
