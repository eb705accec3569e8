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
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import noisesearch
from noisesearch.api import draw_labels
from noisesearch.backends import load_model
from noisesearch.experiments.presets import Preset, RewardColumn, RunSpec
from noisesearch.imaging import to_uint8
from noisesearch.outputs import prepare_out_dir
from noisesearch.problem import Denoiser, Problem
from noisesearch.rewards import get_reward
from noisesearch.sampling import EDMSchedule
from noisesearch.search import get_algorithm
from noisesearch.types import TRACE_FIELDS, Trace

RESULTS = "results.jsonl"


@dataclass(frozen=True)
class Cell:
    run: RunSpec
    column: RewardColumn
    repeat: int

    @property
    def key(self) -> str:
        """Stable identity of the cell in results.jsonl."""
        return json.dumps([self.run.algorithm, self.run.params, self.column.name, self.column.reward,
                           self.column.guidance, self.repeat], sort_keys=True)

    @property
    def slug(self) -> str:
        params = "_".join(f"{k}{v}" for k, v in self.run.params.items())
        return f"{self.run.algorithm}{'_' + params if params else ''}__{self.column.name}__r{self.repeat}"


def sample_seed(seed: int, repeat: int, index: int) -> int:
    """Seed of label `index` in repeat `repeat` of a bench with base seed `seed`."""
    return seed * 1_000_000 + repeat * 1_000 + index


def plan(preset: Preset) -> list[Cell]:
    return [Cell(run, column, r) for column in preset.rewards for run in preset.runs for r in range(preset.repeats)]


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


def environment() -> dict[str, Any]:
    """Versions, machine and git commit of this run."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                                cwd=Path(noisesearch.__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "noisesearch": noisesearch.__version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": "cpu",
        "git_commit": commit, "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def prepare_run_dir(out: Path, preset: Preset, seed: int) -> None:
    prepare_out_dir(out, ("images", "traces"), hint="a directory for the run")
    (out / "preset.json").write_text(json.dumps({"preset": preset.to_dict(), "seed": seed}, indent=2) + "\n")
    history = out / "environment.jsonl"
    with history.open("a") as f:
        f.write(json.dumps(environment()) + "\n")


def expected_nfe(cell: Cell, schedule: EDMSchedule, n: int) -> int:
    """NFE the cell will spend (MCTS: its per-step estimate), for the progress bar."""
    algo = get_algorithm(cell.run.algorithm, **cell.run.params)
    per_call = 1 if cell.column.guidance in (0.0, 1.0) else 2
    return algo.nfe_estimate(schedule) * per_call * n


def run_bench(preset: Preset, out: Path, seed: int = 0, max_batch: int = 16, progress: bool = True,
              model_loader: Callable[[float], Denoiser] = load_model) -> Path:
    """Run (or resume) every cell of `preset` into directory `out`; returns the results path."""
    prepare_run_dir(out, preset, seed)
    results = out / RESULTS
    done = {(r["cell"], r["label_index"]) for r in read_results(results)}
    labels = draw_labels(preset.labels, seed)
    schedule = EDMSchedule(steps=preset.steps)
    todo = []
    for cell in plan(preset):
        missing = [k for k in range(preset.labels) if (cell.key, k) not in done]
        if missing:
            todo.append((cell, missing))
    total = sum(expected_nfe(cell, schedule, len(missing)) for cell, missing in todo)
    bar = tqdm(total=total, unit="NFE", desc=f"bench {preset.name}", disable=not progress, dynamic_ncols=True)
    denoisers: dict[float, Denoiser] = {}
    rewards: dict[str, Any] = {}
    evaluator = get_reward("evaluator")
    try:
        for cell, missing in todo:
            bar.set_postfix_str(cell.slug, refresh=False)
            guidance = cell.column.guidance
            if guidance not in denoisers:
                denoisers[guidance] = model_loader(guidance)
            if cell.column.reward not in rewards:
                rewards[cell.column.reward] = get_reward(cell.column.reward)
            cond = torch.tensor([labels[k] for k in missing])
            seeds = [sample_seed(seed, cell.repeat, k) for k in missing]
            problem = Problem(denoisers[guidance], rewards[cell.column.reward], cond, seeds, schedule,
                              max_batch=max_batch, progress=bar)
            result = get_algorithm(cell.run.algorithm, **cell.run.params).run(problem)
            held_out = evaluator(result.images, cond)
            np.savez_compressed(out / "images" / f"{cell.slug}_{missing[0]:03d}.npz",
                                images=to_uint8(result.images), label_index=np.array(missing))
            if isinstance(result.trace, Trace):
                columns = {name: getattr(result.trace, name).numpy() for name in TRACE_FIELDS}
                columns["condition"] = np.array(missing)[columns["condition"]]
                np.savez_compressed(out / "traces" / f"{cell.slug}_{missing[0]:03d}.npz", **columns)
            lines = [json.dumps({
                "cell": cell.key, "algorithm": cell.run.algorithm, "params": cell.run.params,
                "column": cell.column.name, "reward": cell.column.reward, "guidance": guidance,
                "repeat": cell.repeat, "label_index": k, "label": labels[k], "seed": seeds[row],
                "reward_value": float(result.rewards[row]), "evaluator": float(held_out[row]),
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
