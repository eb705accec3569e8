"""Run a preset's grid of searches, appending every finished cell to results.jsonl; rerunning resumes.

A cell is one run (algorithm and parameters) under one reward column for one repeat; its labels are
searched together in one batched Problem in batch-invariant mode (every call padded to max_batch rows), so a
record does not depend on which other labels shared its cell; each record says so ("batch_invariant").
When a cell finishes, one JSON line per label is appended in a single write, so a run killed at any moment
loses at most the cell in flight, and a rerun of the same command skips every finished (cell, label).

Cells run on an executor (serial in this process, a local process pool, or Ray: see executors.py): each is
`compute_cell(CellTask) -> CellOutput`, a pure function whose records, images and traces come back as data,
and this process alone writes them (write_cell), so the integrity rules below hold for every executor. A
cell that fails is logged in cells.jsonl with its error, and the others go on.

Integrity of a run directory:
- A cell's key names everything that determines its records (algorithm and parameters, column with its
  reward and guidance, repeat, the bench seed from which labels and sample seeds derive, steps, the
  resolved sampler, backend, model and max_batch, the device where it is not the CPU, and the calibration of
  calibrated runs). A resume or
  `--reuse` takes a record only where its key matches exactly; records written before keys held all of
  this (directories without run.json) are never matched, so never mixed in.
- run.json keeps the settings the whole run shares (preset, seed, steps, sampler, backend, model, max_batch,
  device, calibration, the definition of each column); a resume with other ones is refused.
- One writer at a time: run_bench holds an exclusive lock on LOCK in the directory for its whole run.
- Records are validated when read (one-line error naming file and line) and de-duplicated by (cell key,
  label index), the first kept. A torn last line (a kill mid-write) is skipped when reading; only run_bench,
  holding the lock, cuts it off before appending.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import noisesearch
from noisesearch import cost
from noisesearch.adaptive import CalibrationConfig, calibrate
from noisesearch.backends import get_backend, load_backend_denoiser
from noisesearch.backends.registry import check_device
from noisesearch.batching import module_mb, parse_max_batch, probe_call
from noisesearch.denoiser import Denoiser
from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.executors import Executor, Outcome, Resources, SerialExecutor
from noisesearch.experiments.presets import Preset, RewardColumn, RunSpec, is_int, is_number, shown
from noisesearch.imaging import to_uint8
from noisesearch.outputs import prepare_out_dir
from noisesearch.problem import Problem
from noisesearch.progress import BarProgress, ProgressCallback
from noisesearch.rewards import get_reward
from noisesearch.sampling import Sampler, make_sampler
from noisesearch.search import algorithm_class, get_algorithm
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.seeds import bench_seed, check_seed, draw_labels

try:  # the lock: fcntl.flock where there is one (POSIX), msvcrt.locking on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

RESULTS = "results.jsonl"
SETTINGS = "run.json"  # the settings every cell of a run directory shares
LOCK = "bench.lock"  # held (flock, exclusive) by the one bench writing to the directory
CELL_LOG = "cells.jsonl"  # one line per cell run: done or failed (with its error), where it ran, its times
FORMAT = 2  # run.json's format: 2 = cell keys with seed, steps, sampler, backend, model and max_batch


@dataclass(frozen=True)
class Cell:
    """One run × one reward column × one repeat; `setting` is what every cell of its run shares (run_bench's
    bench seed, steps, resolved sampler, backend, model and max_batch), None where it is not known."""

    run: RunSpec
    column: RewardColumn
    repeat: int
    calibration: CalibrationConfig | None = None  # how its schedule is calibrated, for runs of a calibrated schedule
    setting: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """Stable identity of the cell in results.jsonl, a JSON object with sorted keys: everything that
        determines its records (with the label index, which gives the label and the sample seed from the
        bench seed), with the calibration for calibrated runs, so that cells are never taken for one another."""
        identity = {"algorithm": self.run.algorithm, "params": self.run.params, "column": self.column.name,
                    "reward": self.column.reward, "guidance": self.column.guidance, "repeat": self.repeat,
                    **(self.setting or {})}
        if self.calibration is not None:
            identity["calibration"] = self.calibration.identity()
        return json.dumps(identity, sort_keys=True)

    @property
    def slug(self) -> str:
        """File-name stem of the cell's images, traces and grid: letters, digits, '.', '_' and '-' only
        (a schedule named 'calibrated:COLUMN' becomes 'calibrated-COLUMN'), so that every OS can hold it."""
        params = "_".join(f"{k}{v}" for k, v in self.run.params.items())
        name = f"{self.run.algorithm}{'_' + params if params else ''}__{self.column.name}__r{self.repeat}"
        return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def plan(preset: Preset, setting: Callable[[RewardColumn], dict[str, Any]] | None = None) -> list[Cell]:
    """The cells of `preset`, with `setting(column)` (what the run shares) in their keys where it is given."""
    return [Cell(run, column, r, preset.calibration if run.calibrated_column(column.name) else None,
                 None if setting is None else setting(column))
            for column in preset.rewards for run in preset.runs for r in range(preset.repeats)]


def is_str(value: Any) -> bool:
    return isinstance(value, str)


# Fields every record of results.jsonl has, with their JSON types.
RECORD_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "cell": (is_str, "a string"), "algorithm": (is_str, "a string"),
    "params": (lambda v: isinstance(v, dict), "a JSON object"), "column": (is_str, "a string"),
    "reward": (is_str, "a string"), "guidance": (is_number, "a number"),
    "repeat": (lambda v: is_int(v) and v >= 0, "an integer of at least 0"),
    "label_index": (lambda v: is_int(v) and v >= 0, "an integer of at least 0"),
    "label": (is_int, "an integer"), "seed": (is_int, "an integer"), "reward_value": (is_number, "a number"),
    "evaluator": (lambda v: v is None or is_number(v), "a number or null"),
    "nfe": (lambda v: is_int(v) and v >= 0, "an integer of at least 0"), "wall_time_s": (is_number, "a number"),
    "steps": (is_int, "an integer"),
}


def check_record(record: Any, where: str) -> dict[str, Any]:
    """The record of one results.jsonl line, or a one-line NoiseSearchError naming `where` (file and line)."""
    hint = "fix or delete the line; bench reruns what is missing"
    if not isinstance(record, dict):
        raise NoiseSearchError(f"{where}: a record must be a JSON object, got {shown(record)} ({hint})")
    for name, (check, noun) in RECORD_FIELDS.items():
        if name not in record:
            raise NoiseSearchError(f"{where}: the record has no \"{name}\" ({hint})")
        if not check(record[name]):
            raise NoiseSearchError(f"{where}: \"{name}\" must be {noun}, got {shown(record[name])} ({hint})")
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


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment(device: str = "cpu") -> dict[str, Any]:
    """Versions, the device the network runs on, machine (CPU model and the vector instructions torch's
    kernels use: results can differ in the last bits between CPUs), git commit of this run and whether the
    package's source differed from it."""
    here = Path(noisesearch.__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=here).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True,
                                    timeout=10, cwd=here).stdout.strip()) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit = dirty = None
    return {
        "noisesearch": noisesearch.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "processor": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "device": device,
        "git_commit": commit, "git_dirty": dirty, "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@contextmanager
def run_dir_lock(out: Path) -> Iterator[None]:
    """Create the run directory `out` and hold an exclusive lock on its LOCK file while the block runs, or
    raise a one-line NoiseSearchError if another process holds it (the lock goes with the process, even if
    it is killed; the file stays)."""
    if out.exists() and not out.is_dir():
        raise NoiseSearchError(f"--out {out} is a file: give a directory for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = (out / LOCK).open("a")
    except OSError as err:
        raise NoiseSearchError(f"cannot write to --out {out} ({err.strerror}): choose a writable directory") from None
    busy = f"another bench is writing to {out}: let it finish, or use another --out"
    with handle:
        try:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:  # pragma: no cover
                import msvcrt

                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except BlockingIOError:
            raise NoiseSearchError(busy) from None
        except OSError as err:
            if fcntl is None:  # pragma: no cover  (msvcrt raises a PermissionError when the lock is taken)
                raise NoiseSearchError(busy) from None
            raise NoiseSearchError(f"cannot lock {out / LOCK} ({err.strerror})") from None
        yield


def model_identity(model: str | None) -> str | None:
    """The model of a run as its key names it: the absolute path of an existing file or directory, else as given."""
    if model is None:
        return None
    path = Path(model).expanduser()
    return str(path.resolve()) if path.exists() else model


def run_settings(preset: Preset, seed: int, sampler: str, backend: str, model: str | None, max_batch: int,
                 device: str = "cpu") -> dict[str, Any]:
    """What every cell of a run shares, as run.json keeps it (JSON values only)."""
    return json.loads(json.dumps({
        "format": FORMAT, "preset": preset.name, "seed": seed, "steps": preset.steps, "sampler": sampler,
        "backend": backend, "model": model, "max_batch": max_batch, "device": device,
        "calibration": None if preset.calibration is None else preset.calibration.identity(),
        "columns": {c.name: {"reward": c.reward, "guidance": c.guidance} for c in preset.rewards},
    }))


SHARED = ("format", "preset", "seed", "steps", "sampler", "backend", "model", "max_batch", "device", "calibration")


def setting_of(settings: dict[str, Any], name: str) -> Any:
    """A shared setting of run.json; a run directory written before bench took --device ran on the CPU."""
    return settings.get(name, "cpu" if name == "device" else None)


def read_settings(directory: Path, hint: str = "") -> dict[str, Any] | None:
    """The run.json of a bench run directory, None where there is none; a one-line NoiseSearchError (ending
    in `hint`) where it cannot be read."""
    path = directory / SETTINGS
    if not path.exists():
        return None
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise NoiseSearchError(f"{path} is unreadable ({err}){hint}") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("columns"), dict):
        raise NoiseSearchError(f"{path} is not the settings of a bench run{hint}")
    return settings


def resume_settings(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings to keep in out/run.json: `settings`, with the columns of earlier starts; a one-line
    NoiseSearchError if the directory holds a run of other settings (another seed, steps, sampler, backend,
    model, max_batch, preset or calibration, or a column of this name defined otherwise), or one written
    before run directories kept their settings."""
    theirs = read_settings(out, ": use another --out")
    if theirs is None:
        if (out / "preset.json").exists() or load_results(out / RESULTS).records:
            raise NoiseSearchError(f"{out} holds a bench run from before run directories kept their settings "
                                   f"({SETTINGS}); its records cannot be matched to this one: use another --out")
        return settings
    differ = [f"{name} {shown(setting_of(theirs, name))}, not {shown(settings[name])}"
              for name in SHARED if setting_of(theirs, name) != settings[name]]
    differ += [f"column {name} {shown(theirs['columns'][name])}, not {shown(column)}"
               for name, column in settings["columns"].items()
               if name in theirs["columns"] and theirs["columns"][name] != column]
    if differ:
        raise NoiseSearchError(f"{out} holds a bench run with other settings ({'; '.join(differ)}): use another "
                               "--out for this one")
    return {**settings, "columns": {**theirs["columns"], **settings["columns"]}}


def prepare_run_dir(out: Path, preset: Preset, seed: int, settings: dict[str, Any]) -> None:
    """Write run.json, preset.json and a line of environment.jsonl, make the folders, and cut a torn last
    line off results.jsonl; the caller holds the directory's lock."""
    prepare_out_dir(out, ("images", "traces"), hint="a directory for the run")
    tmp = out / f"{SETTINGS}.tmp"
    tmp.write_text(json.dumps(settings, indent=2) + "\n")
    tmp.replace(out / SETTINGS)
    (out / "preset.json").write_text(json.dumps({"preset": preset.to_dict(), "seed": seed}, indent=2) + "\n")
    history = out / "environment.jsonl"
    with history.open("a") as f:
        f.write(json.dumps(environment(settings["device"])) + "\n")
    cut_torn_line(out / RESULTS)


def expected_nfe(cell: Cell, sampler: Sampler, denoiser: Denoiser, n: int, schedules: dict[str, SearchSchedule]
                 ) -> int:
    """NFE the cell will spend (MCTS: its per-step estimate), for the progress bar."""
    algo = get_algorithm(cell.run.algorithm, **cell.run.algorithm_params(schedules, cell.column.name))
    return cost.nfe(algo.nfe_estimate(sampler), denoiser) * n


def strict_json(record: dict[str, Any], cell: Cell) -> str:
    """A record as strict JSON (no bare NaN), or a one-line error naming the cell."""
    try:
        return json.dumps(record, allow_nan=False)
    except ValueError:
        raise NoiseSearchError(f"cell {cell.slug} produced NaN or inf (evaluator or timing): not recorded") from None


def run_bench(preset: Preset, out: Path, *, seed: int = 0, max_batch: int = 16, progress: bool = True,
              device: str = "cpu", backend: str | None = None, model: str | None = None, sampler: str | None = None,
              model_loader: Callable[[float], Denoiser] | None = None, reuse: Sequence[Path] = (),
              trust_model_code: bool = False, executor: Executor | None = None) -> Path:
    """Run (or resume) every cell of `preset` into directory `out`; returns the results path. Cells run on
    the `backend`'s model (default: the preset's; `model`: its path; `model_loader(guidance)` replaces the
    loader, and `model` then only names it in the cell keys) with its default sampler or the registered
    `sampler`; conditions are labels drawn from `seed`; the network runs on `device` (rewards on the CPU).
    Results of identical cells (equal keys: see Cell.key) in the `reuse` run directories are copied instead
    of rerun, and so are their schedules calibrated exactly as `preset` would calibrate them.
    `trust_model_code` lets the backend load a model file that needs code to load.

    Cells (and calibrations) run on `executor` (default: serial, in this process); only this process writes
    the directory, one write per finished cell. A cell that fails is logged in cells.jsonl with its error and
    the others go on; the run then ends in a one-line NoiseSearchError naming the failures (a rerun retries them).

    The whole run holds `out`'s lock (a second bench on `out` gets a one-line NoiseSearchError); a resume
    with other settings than out/run.json's is refused, as is one of a directory written before run.json."""
    backend = backend or preset.backend
    spec = get_backend(backend)
    if spec.conditions != "labels":
        raise NoiseSearchError(f"bench draws class labels; the {backend} backend takes prompts")
    check_seed(seed, "the bench seed")
    bench_seed(seed, preset.repeats - 1, preset.labels - 1)  # the largest sample seed, checked before writing
    max_batch = parse_max_batch(max_batch, fixed_for="bench")
    out = Path(out)
    for source in reuse:
        check_reuse_source(Path(source))
    sampler_name = sampler or spec.default_sampler
    make_sampler(sampler_name, preset.steps)  # an unknown sampler is an error before anything is written
    check_device(device)
    settings = run_settings(preset, seed, sampler_name, backend, model_identity(model), max_batch, device)
    with run_dir_lock(out):
        settings = resume_settings(out, settings)
        source = partial(ModelSource, settings["backend"], settings["model"], device=device,
                         trust_model_code=trust_model_code,
                         loader=model_loader)
        try:
            return run_locked(preset, out, settings, spec.evaluator, progress, source, reuse,
                              executor or SerialExecutor())
        finally:
            LOADED.clear()


@dataclass(frozen=True)
class ModelSource:
    """How a cell's denoiser loads wherever the cell runs: the backend's model at a guidance weight, or
    `loader(guidance)` (run_bench's model_loader: a module-level function for the process executor); each
    process loads it once (see `cached`)."""

    backend: str
    model: str | None
    guidance: float
    device: str = "cpu"
    trust_model_code: bool = False
    loader: Callable[[float], Denoiser] | None = None

    def load(self) -> Denoiser:
        def load() -> Denoiser:
            if self.loader is not None:
                return self.loader(self.guidance)
            return load_backend_denoiser(self.backend, self.model, self.guidance, device=self.device,
                                         trust_model_code=self.trust_model_code)
        return cached(self, load)


LOADED: dict[Any, Any] = {}  # this process's denoisers and rewards (a worker's serve all its cells)


def cached(key: Any, make: Callable[[], Any]) -> Any:
    if key not in LOADED:
        LOADED[key] = make()
    return LOADED[key]


def reward_named(name: str) -> Any:
    return cached(("reward", name), lambda: get_reward(name))


@dataclass(frozen=True)
class CellTask:
    """All that computing one cell's records takes, as plain picklable data: the cell, the label indices it
    still lacks with their labels and sample seeds, the model, sampler and steps, max_batch, the calibrated
    schedules its run uses and the held-out evaluator (None: none)."""

    cell: Cell
    label_indices: tuple[int, ...]
    labels: tuple[int, ...]
    seeds: tuple[int, ...]
    model: ModelSource
    sampler: str
    steps: int
    max_batch: int
    schedules: dict[str, SearchSchedule]
    evaluator: str | None


@dataclass(frozen=True)
class CellOutput:
    """What a cell gives back to the driver, which alone writes: its results.jsonl lines (one per label, in
    order), its images (uint8) and its trace columns (None: the algorithm keeps none), and the NFE it spent."""

    lines: tuple[str, ...]
    images: np.ndarray
    trace: dict[str, np.ndarray] | None
    nfe: int


def compute_cell(task: CellTask, callback: ProgressCallback | None = None) -> CellOutput:
    """Search one cell and make its records; touches no file (it may run on a worker without the run's disk)."""
    cell, missing = task.cell, list(task.label_indices)
    denoiser = task.model.load()
    cond = torch.tensor(task.labels)
    problem = Problem(denoiser, reward_named(cell.column.reward), cond, list(task.seeds),
                      denoiser.default_sampler(task.sampler, task.steps), max_batch=task.max_batch, callback=callback,
                      batch_invariant=True)
    result = get_algorithm(cell.run.algorithm, **cell.run.algorithm_params(task.schedules, cell.column.name)
                           ).run(problem)
    held_out = reward_named(task.evaluator)(result.images, cond) if task.evaluator is not None else None
    trace = None
    if result.trace is not None:
        trace = result.trace.columns()
        trace["condition"] = np.array(missing, dtype=np.int64)[trace["condition"]]
    lines = tuple(strict_json({
        "cell": cell.key, "algorithm": cell.run.algorithm, "params": cell.run.params,
        "column": cell.column.name, "reward": cell.column.reward, "guidance": cell.column.guidance,
        "repeat": cell.repeat, "label_index": k, "label": task.labels[row], "seed": task.seeds[row],
        "reward_value": float(result.rewards[row]),
        "evaluator": None if held_out is None else float(held_out[row]),
        "nfe": int(result.nfe[row]), "wall_time_s": result.wall_time / len(missing),
        "cell_wall_time_s": result.wall_time, "steps": task.steps, "batch_invariant": True,
        **({"arm": result.config["arms"][row]} if "arms" in result.config else {}),
    }, cell) + "\n" for row, k in enumerate(missing))
    return CellOutput(lines, to_uint8(result.images), trace, int(result.nfe.sum()))


def write_cell(out: Path, task: CellTask, output: CellOutput) -> None:
    """Save a finished cell's images and trace, then append its records in one write (fsynced)."""
    stem = f"{task.cell.slug}_{task.label_indices[0]:03d}.npz"
    np.savez_compressed(out / "images" / stem, images=output.images, label_index=np.array(task.label_indices))
    if output.trace is not None:
        np.savez_compressed(out / "traces" / stem, **output.trace)
    with (out / RESULTS).open("a") as f:
        f.write("".join(output.lines))
        f.flush()
        os.fsync(f.fileno())


def log_cell(out: Path, task: CellTask, outcome: Outcome, executor: Executor) -> None:
    """Append a line to out/cells.jsonl: how the cell went (done or failed, with its error), where it ran and
    how long it took."""
    line = {"cell": task.cell.key, "slug": task.cell.slug, "label_indices": list(task.label_indices),
            "status": "done" if outcome.ok else "failed", "error": outcome.error, "traceback": outcome.traceback,
            "attempts": outcome.attempts, **executor.describe(), "worker": outcome.worker,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with (out / CELL_LOG).open("a") as f:
        f.write(json.dumps(line) + "\n")


def cell_memory_mb(denoiser: Denoiser, sampler: Sampler, max_batch: int) -> float:
    """A cell's memory estimate: the denoiser's weights and the peak growth of one call of max_batch rows."""
    probe = probe_call(denoiser, max_batch, float(sampler.sigmas[0]), torch.zeros(1, dtype=torch.long))
    return module_mb(denoiser) + probe.peak_mb


def run_locked(preset: Preset, out: Path, settings: dict[str, Any], evaluator_name: str | None, progress: bool,
               source: Callable[[float], ModelSource], reuse: Sequence[Path], executor: Executor) -> Path:
    """run_bench's work once it holds `out`'s lock and has checked `settings` (see run_settings)."""
    seed, max_batch = settings["seed"], settings["max_batch"]

    def denoiser(guidance: float) -> Denoiser:
        return source(guidance).load()

    def sampler_of(guidance: float) -> Sampler:
        return denoiser(guidance).default_sampler(settings["sampler"], preset.steps)

    shared = {name: settings[name] for name in ("seed", "steps", "backend", "model", "max_batch")}
    if settings["device"] != "cpu":  # CPU cells keep the keys they had before bench took --device
        shared["device"] = settings["device"]
    cells = plan(preset, lambda column: {**shared, "sampler": sampler_of(column.guidance).to_dict()})
    if len({c.key for c in cells}) < len(cells) or len({c.slug for c in cells}) < len(cells):
        raise NoiseSearchError(f"preset '{preset.name}' has two cells of one name: give runs and columns "
                               "distinct parameters and names")
    prepare_run_dir(out, preset, seed, settings)
    results = out / RESULTS
    labels = draw_labels(preset.labels, seed)
    for reused in reuse:
        copy_schedules(Path(reused), out, preset, settings)
        copy_results(Path(reused), out, cells, labels, seed)
    done = {(r["cell"], r["label_index"]) for r in read_results(results)}
    todo = []
    for cell in cells:
        missing = [k for k in range(preset.labels) if (cell.key, k) not in done]
        if missing and len(missing) < preset.labels and algorithm_class(cell.run.algorithm).learns_across_conditions:
            raise NoiseSearchError(f"{out} holds part of the stream of cell {cell.slug}, whose results depend on the "
                                   "labels before them: use another --out for a stream of another length")
        if missing:
            todo.append((cell, missing))
    needed = {cell.run.calibrated_column(cell.column.name) for cell, _ in todo} - {None}
    schedules = calibrate_columns(preset, [c for c in preset.rewards if c.name in needed], out, denoiser,
                                  sampler_of, max_batch, progress, executor)
    tasks = [CellTask(cell, tuple(missing), tuple(labels[k] for k in missing),
                      tuple(bench_seed(seed, cell.repeat, k) for k in missing), source(cell.column.guidance),
                      settings["sampler"], preset.steps, max_batch,
                      {name: schedules[name] for name in {cell.run.calibrated_column(cell.column.name)} - {None}},
                      evaluator_name)
             for cell, missing in todo]
    memory = {g: cell_memory_mb(denoiser(g), sampler_of(g), max_batch) if executor.schedules_memory else None
              for g in {t.model.guidance for t in tasks}}
    total = sum(expected_nfe(t.cell, sampler_of(t.model.guidance), denoiser(t.model.guidance), len(t.labels),
                             schedules) for t in tasks)
    bar = tqdm(total=total, unit="NFE", desc=f"bench {preset.name}", disable=not progress, dynamic_ncols=True)
    failed = []
    try:
        needs = [Resources(memory_mb=memory[t.model.guidance]) for t in tasks]
        for outcome in executor.map(compute_cell, tasks, needs, callback=BarProgress(bar)):
            task = tasks[outcome.index]
            if outcome.ok:
                write_cell(out, task, outcome.value)
                if not executor.reports_progress:
                    bar.update(outcome.value.nfe)
            else:
                failed.append((task.cell.slug, outcome.error))
            bar.set_postfix_str(task.cell.slug, refresh=False)
            log_cell(out, task, outcome, executor)
    finally:
        bar.close()
    if failed:
        raise NoiseSearchError(f"{len(failed)} of {len(tasks)} cells failed, the others are recorded (first: "
                               f"{failed[0][0]}: {failed[0][1]}); errors in {out / CELL_LOG}; rerun the command to "
                               "retry the failed cells")
    return results


def check_reuse_source(source: Path) -> None:
    """A one-line NoiseSearchError unless `source` is a bench run directory (it has results)."""
    if not (source / RESULTS).is_file():
        raise NoiseSearchError(f"--reuse {source}: no {RESULTS} there (not a bench run directory)")


def copy_schedules(source: Path, out: Path, preset: Preset, settings: dict[str, Any]) -> list[str]:
    """Copy into out/schedules the schedules that `source` (another bench run directory) calibrated as
    `preset` would: same calibration, steps, sampler, backend, model and max_batch (its run.json's) and the
    same column (reward, guidance); returns their columns. Directories without run.json give none."""
    theirs = read_settings(source) if source.is_dir() else None
    if preset.calibration is None or theirs is None:
        return []
    if any(setting_of(theirs, name) != settings[name]
           for name in ("calibration", "steps", "sampler", "backend", "model", "max_batch", "device")):
        return []
    copied = []
    for column in preset.rewards:
        made, wanted = source / "schedules" / f"{column.name}.json", out / "schedules" / f"{column.name}.json"
        if (made.is_file() and not wanted.exists()
                and theirs["columns"].get(column.name) == settings["columns"][column.name]):
            wanted.parent.mkdir(exist_ok=True)
            shutil.copyfile(made, wanted)
            copied.append(column.name)
    return copied


def copy_results(source: Path, out: Path, cells: Sequence[Cell], labels: list[int], seed: int) -> int:
    """Append to out's results the records of `source` (another bench run directory) whose cell key is one of
    `cells`' (so the same settings: see Cell.key) with the same label and sample seed that `out` lacks, with
    their images and traces; returns how many were copied. Bench results are batch-invariant (records written
    before the mode was recorded were too; a record of another mode is never taken), so these are the records a
    rerun would write. Records of directories written before keys held the settings never match."""
    check_reuse_source(source)
    if source.resolve() == out.resolve():
        return 0
    keys = {cell.key: cell for cell in cells}
    done = {(r["cell"], r["label_index"]) for r in read_results(out / RESULTS)}
    take = [r for r in read_results(source / RESULTS)
            if r["cell"] in keys and r.get("batch_invariant", True)
            and (r["cell"], r["label_index"]) not in done and r["label_index"] < len(labels)
            and r["label"] == labels[r["label_index"]]
            and r["seed"] == bench_seed(seed, r["repeat"], r["label_index"])]
    if not take:
        return 0
    wanted: dict[str, set[int]] = defaultdict(set)
    for r in take:
        wanted[keys[r["cell"]].slug].add(r["label_index"])
    for folder, index_of in (("images", lambda d: d["label_index"]), ("traces", lambda d: d["condition"])):
        for slug, indices in wanted.items():
            for part in sorted((source / folder).glob(f"{slug}_*.npz")):
                with np.load(part) as data:
                    keep = np.isin(index_of(data), sorted(indices))
                    if keep.any():
                        np.savez_compressed(out / folder / f"{part.stem}_reused.npz",
                                            **{name: data[name][keep] for name in data.files})
    with (out / RESULTS).open("a") as f:
        f.write("".join(json.dumps({**r, "reused_from": str(source)}) + "\n" for r in take))
        f.flush()
        os.fsync(f.fileno())
    return len(take)


def calibrate_columns(preset: Preset, columns: list[RewardColumn], out: Path, denoiser: Callable[[float], Denoiser],
                      sampler_of: Callable[[float], Sampler], max_batch: int, progress: bool,
                      executor: Executor | None = None) -> dict[str, SearchSchedule]:
    """The calibrated schedule of each column, read from out/schedules/COLUMN.json or calibrated into it
    (on the preset's calibration conditions, whose seeds no bench cell uses; its probes and validation runs
    on `executor`); each calibration's cost is kept in the schedule's info."""
    schedules = {}
    for column in columns:
        path = out / "schedules" / f"{column.name}.json"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            plan = calibrate(column.reward, preset.calibration, denoiser=denoiser(column.guidance),
                             sampler=sampler_of(column.guidance), guidance=column.guidance, max_batch=max_batch,
                             batch_invariant=True, evaluator=None, progress=progress, executor=executor)
            tmp = path.with_suffix(".tmp")
            plan.save(tmp)
            tmp.replace(path)
        schedules[column.name] = SearchSchedule.load(path)
    return schedules
