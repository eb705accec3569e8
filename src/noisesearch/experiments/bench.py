"""Run a preset's grid of searches, appending every finished cell to results.jsonl; rerunning resumes.

A cell is one run (algorithm and parameters) under one reward column for one repeat; its labels are
searched together in one batched Problem. When a cell finishes, one JSON line per label is appended
in a single write, so a run killed at any moment loses at most the cell in flight, and a rerun of the
same command skips every finished (cell, label).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import noisesearch
from noisesearch import cost
from noisesearch.adaptive import CalibrationConfig, calibrate
from noisesearch.backends import get_backend, load_backend_denoiser
from noisesearch.denoiser import Denoiser
from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.presets import Preset, RewardColumn, RunSpec
from noisesearch.imaging import to_uint8
from noisesearch.outputs import prepare_out_dir
from noisesearch.problem import Problem
from noisesearch.progress import BarProgress
from noisesearch.rewards import get_reward
from noisesearch.sampling import Sampler
from noisesearch.search import get_algorithm
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.seeds import bench_seed, draw_labels

RESULTS = "results.jsonl"


@dataclass(frozen=True)
class Cell:
    run: RunSpec
    column: RewardColumn
    repeat: int
    calibration: CalibrationConfig | None = None  # how its schedule is calibrated, for runs of a calibrated schedule

    @property
    def key(self) -> str:
        """Stable identity of the cell in results.jsonl (with the calibration for calibrated runs, so that
        runs under different calibrations are never taken for one another)."""
        identity = [self.run.algorithm, self.run.params, self.column.name, self.column.reward,
                    self.column.guidance, self.repeat]
        if self.calibration is not None:
            identity.append(self.calibration.identity())
        return json.dumps(identity, sort_keys=True)

    @property
    def slug(self) -> str:
        """File-name stem of the cell's images, traces and grid: letters, digits, '.', '_' and '-' only
        (a schedule named 'calibrated:COLUMN' becomes 'calibrated-COLUMN'), so that every OS can hold it."""
        params = "_".join(f"{k}{v}" for k, v in self.run.params.items())
        name = f"{self.run.algorithm}{'_' + params if params else ''}__{self.column.name}__r{self.repeat}"
        return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def plan(preset: Preset) -> list[Cell]:
    return [Cell(run, column, r, preset.calibration if run.calibrated_column(column.name) else None)
            for column in preset.rewards for run in preset.runs for r in range(preset.repeats)]


def read_results(path: Path) -> list[dict[str, Any]]:
    """Records of results.jsonl; a torn last line (from a kill mid-write) is cut off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as f:
            f.truncate(end)
    return [json.loads(line) for line in data[:end].decode().splitlines() if line.strip()]


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment() -> dict[str, Any]:
    """Versions, machine (CPU model and the vector instructions torch's kernels use: results can differ
    in the last bits between CPUs), git commit of this run and whether the package's source differed from it."""
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
        "torch_threads": torch.get_num_threads(), "device": "cpu",
        "git_commit": commit, "git_dirty": dirty, "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def prepare_run_dir(out: Path, preset: Preset, seed: int) -> None:
    prepare_out_dir(out, ("images", "traces"), hint="a directory for the run")
    (out / "preset.json").write_text(json.dumps({"preset": preset.to_dict(), "seed": seed}, indent=2) + "\n")
    history = out / "environment.jsonl"
    with history.open("a") as f:
        f.write(json.dumps(environment()) + "\n")


def expected_nfe(cell: Cell, sampler: Sampler, denoiser: Denoiser, n: int, schedules: dict[str, SearchSchedule]
                 ) -> int:
    """NFE the cell will spend (MCTS: its per-step estimate), for the progress bar."""
    algo = get_algorithm(cell.run.algorithm, **cell.run.algorithm_params(schedules, cell.column.name))
    return cost.nfe(algo.nfe_estimate(sampler), denoiser) * n


def run_bench(preset: Preset, out: Path, *, seed: int = 0, max_batch: int = 16, progress: bool = True,
              backend: str = "embedded", model: str | None = None, sampler: str | None = None,
              model_loader: Callable[[float], Denoiser] | None = None, reuse: Sequence[Path] = ()) -> Path:
    """Run (or resume) every cell of `preset` into directory `out`; returns the results path. Cells run on
    the `backend`'s model (`model`: its path; `model_loader(guidance)` replaces the loader) with its
    default sampler or the registered `sampler`; conditions are labels drawn from `seed`. Results of
    identical cells, labels and seeds in the `reuse` run directories are copied instead of rerun, and so
    are their schedules calibrated exactly as `preset` would calibrate them."""
    spec = get_backend(backend)
    if spec.conditions != "labels":
        raise NoiseSearchError(f"bench draws class labels; the {backend} backend takes prompts")
    prepare_run_dir(out, preset, seed)
    results = out / RESULTS
    labels = draw_labels(preset.labels, seed)
    for source in reuse:
        copy_schedules(source, out, preset)
        copy_results(source, out, preset, seed, labels)
    done = {(r["cell"], r["label_index"]) for r in read_results(results)}
    todo = []
    for cell in plan(preset):
        missing = [k for k in range(preset.labels) if (cell.key, k) not in done]
        if missing:
            todo.append((cell, missing))
    denoisers: dict[float, Denoiser] = {}

    def denoiser(guidance: float) -> Denoiser:
        if guidance not in denoisers:
            denoisers[guidance] = (model_loader(guidance) if model_loader is not None
                                   else load_backend_denoiser(backend, model, guidance))
        return denoisers[guidance]

    def sampler_of(guidance: float) -> Sampler:
        return denoiser(guidance).default_sampler(sampler or spec.default_sampler, preset.steps)

    needed = {cell.run.calibrated_column(cell.column.name) for cell, _ in todo} - {None}
    schedules = calibrate_columns(preset, [c for c in preset.rewards if c.name in needed], out, denoiser,
                                  sampler_of, max_batch, progress)
    total = sum(expected_nfe(cell, sampler_of(cell.column.guidance), denoiser(cell.column.guidance), len(missing),
                             schedules) for cell, missing in todo)
    bar = tqdm(total=total, unit="NFE", desc=f"bench {preset.name}", disable=not progress, dynamic_ncols=True)
    rewards: dict[str, Any] = {}
    evaluator = get_reward(spec.evaluator) if spec.evaluator is not None else None
    try:
        for cell, missing in todo:
            bar.set_postfix_str(cell.slug, refresh=False)
            guidance = cell.column.guidance
            if cell.column.reward not in rewards:
                rewards[cell.column.reward] = get_reward(cell.column.reward)
            cond = torch.tensor([labels[k] for k in missing])
            seeds = [bench_seed(seed, cell.repeat, k) for k in missing]
            problem = Problem(denoiser(guidance), rewards[cell.column.reward], cond, seeds, sampler_of(guidance),
                              max_batch=max_batch, callback=BarProgress(bar))
            params = cell.run.algorithm_params(schedules, cell.column.name)
            result = get_algorithm(cell.run.algorithm, **params).run(problem)
            held_out = evaluator(result.images, cond) if evaluator is not None else None
            np.savez_compressed(out / "images" / f"{cell.slug}_{missing[0]:03d}.npz",
                                images=to_uint8(result.images), label_index=np.array(missing))
            if result.trace is not None:
                columns = result.trace.columns()
                columns["condition"] = np.array(missing, dtype=np.int64)[columns["condition"]]
                np.savez_compressed(out / "traces" / f"{cell.slug}_{missing[0]:03d}.npz", **columns)
            lines = [json.dumps({
                "cell": cell.key, "algorithm": cell.run.algorithm, "params": cell.run.params,
                "column": cell.column.name, "reward": cell.column.reward, "guidance": guidance,
                "repeat": cell.repeat, "label_index": k, "label": labels[k], "seed": seeds[row],
                "reward_value": float(result.rewards[row]),
                "evaluator": None if held_out is None else float(held_out[row]),
                "nfe": int(result.nfe[row]), "wall_time_s": result.wall_time / len(missing),
                "cell_wall_time_s": result.wall_time, "steps": preset.steps,
            }) + "\n" for row, k in enumerate(missing)]
            with results.open("a") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
    finally:
        bar.close()
    return results


def copy_schedules(source: Path, out: Path, preset: Preset) -> list[str]:
    """Copy into out/schedules the schedules that `source` (another bench run directory) calibrated as
    `preset` would: same calibration, sampler steps and column (reward, guidance); returns their columns."""
    if preset.calibration is None or not (source / "preset.json").is_file():
        return []
    theirs = Preset.from_dict("source", json.loads((source / "preset.json").read_text())["preset"])
    if theirs.calibration != preset.calibration or theirs.steps != preset.steps:
        return []
    their_columns = {column.name: column for column in theirs.rewards}
    copied = []
    for column in preset.rewards:
        made, wanted = source / "schedules" / f"{column.name}.json", out / "schedules" / f"{column.name}.json"
        if made.is_file() and not wanted.exists() and their_columns.get(column.name) == column:
            wanted.parent.mkdir(exist_ok=True)
            shutil.copyfile(made, wanted)
            copied.append(column.name)
    return copied


def copy_results(source: Path, out: Path, preset: Preset, seed: int, labels: list[int]) -> int:
    """Append to out's results the records of `source` (another bench run directory) for cells of `preset`
    with the same label, sample seed and steps that `out` lacks, with their images and traces; returns
    how many were copied. Results are batch-independent, so these are the records a rerun would write."""
    if not (source / RESULTS).is_file():
        raise NoiseSearchError(f"--reuse {source}: no {RESULTS} there (not a bench run directory)")
    if source.resolve() == out.resolve():
        return 0
    keys = {cell.key: cell for cell in plan(preset)}
    done = {(r["cell"], r["label_index"]) for r in read_results(out / RESULTS)}
    take = [r for r in read_results(source / RESULTS)
            if r["cell"] in keys and (r["cell"], r["label_index"]) not in done and r["label_index"] < preset.labels
            and r["label"] == labels[r["label_index"]] and r["steps"] == preset.steps
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
                      sampler_of: Callable[[float], Sampler], max_batch: int, progress: bool
                      ) -> dict[str, SearchSchedule]:
    """The calibrated schedule of each column, read from out/schedules/COLUMN.json or calibrated into it
    (on the preset's calibration conditions, whose seeds no bench cell uses); each calibration's cost
    is kept in the schedule's info."""
    schedules = {}
    for column in columns:
        path = out / "schedules" / f"{column.name}.json"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            plan = calibrate(column.reward, preset.calibration, denoiser=denoiser(column.guidance),
                             sampler=sampler_of(column.guidance), guidance=column.guidance, max_batch=max_batch,
                             evaluator=None, progress=progress)
            tmp = path.with_suffix(".tmp")
            plan.save(tmp)
            tmp.replace(path)
        schedules[column.name] = SearchSchedule.load(path)
    return schedules
