"""The cells of a bench: what one cell is (a run × a reward column × a repeat, with the key that names its
records) and how it is computed, as a pure function of plain data that may run on any executor's worker.

A cell's labels are searched together in one batched Problem in batch-invariant mode (every call padded to
max_batch rows), so a record does not depend on which other labels shared its cell; each record says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from noisesearch import cost
from noisesearch.adaptive import CalibrationConfig
from noisesearch.api import make_problem
from noisesearch.backends import load_backend_denoiser
from noisesearch.batching import module_mb, probe_call
from noisesearch.denoiser import Denoiser
from noisesearch.errors import NoiseSearchError
from noisesearch.experiments.presets import Preset, RewardColumn, RunSpec
from noisesearch.experiments.store import cell_slug
from noisesearch.imaging import quantized, to_uint8
from noisesearch.metrics import get_extractor
from noisesearch.problem import Problem
from noisesearch.progress import ProgressCallback
from noisesearch.rewards import get_reward
from noisesearch.rewards.registry import parse_reward_args
from noisesearch.sampling import Sampler
from noisesearch.search import get_algorithm
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.types import SearchResult


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
                    **self.column.identity, "repeat": self.repeat, **(self.setting or {})}
        if self.calibration is not None:
            identity["calibration"] = self.calibration.identity()
        return json.dumps(identity, sort_keys=True)

    @property
    def slug(self) -> str:
        """File-name stem of the cell's images, traces and grid (see store.cell_slug)."""
        return cell_slug(self.run.algorithm, self.run.params, self.column.name, self.repeat, self.run.steps)


def preset_cells(preset: Preset, setting: Callable[[RunSpec, RewardColumn], dict[str, Any]] | None = None
                 ) -> list[Cell]:
    """The cells of `preset`, with `setting(run, column)` (what the run shares, with a run's own steps and their
    sampler) in their keys where it is given."""
    return [Cell(run, column, r, preset.calibration if run.calibrated_column(column.name) else None,
                 None if setting is None else setting(run, column))
            for column in preset.rewards for run in preset.runs if run.runs_in(column.name)
            for r in range(preset.repeats)]


@dataclass(frozen=True)
class ModelSource:
    """How a cell's denoiser loads wherever the cell runs: the backend's model at a guidance weight, or
    `loader(guidance)` (run_bench's model_loader: a module-level function for the process executor); each
    process loads it once (see `cached`)."""

    backend: str
    model: str | None
    guidance: float
    device: str = "cpu"
    dtype: str = "float32"
    trust_model_code: bool = False
    loader: Callable[[float], Denoiser] | None = None

    def load(self) -> Denoiser:
        def load() -> Denoiser:
            if self.loader is not None:
                return self.loader(self.guidance)
            return load_backend_denoiser(self.backend, self.model, self.guidance, device=self.device,
                                         dtype=self.dtype, trust_model_code=self.trust_model_code)
        return cached(self, load)


LOADED: dict[Any, Any] = {}  # this process's denoisers and rewards (a worker's serve all its cells)


def cached(key: Any, make: Callable[[], Any]) -> Any:
    if key not in LOADED:
        LOADED[key] = make()
    return LOADED[key]


def reward_named(name: str, args: dict[str, Any] | None = None) -> Any:
    """The reward `name` built with `args` (parsed as a command line's would be), once per process."""
    return cached(("reward", name, json.dumps(args or {}, sort_keys=True)),
                  lambda: get_reward(name, **parse_reward_args(name, args or {})))


@dataclass(frozen=True)
class CellTask:
    """All that computing one cell's records takes, as plain picklable data: the cell, the label indices it
    still lacks with their labels and sample seeds, the model, sampler and steps, max_batch, the calibrated
    schedules its run uses, the held-out evaluator and the feature extractor whose features of each image the
    population metrics need (None: none)."""

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
    extractor: str | None = None
    pooled: tuple[Cell, ...] = ()  # cells computed from one pool of trajectories (experiments.pools), cell first

    @property
    def cells(self) -> tuple[Cell, ...]:
        """The cells this task computes, in the order of its outputs."""
        return self.pooled or (self.cell,)


@dataclass(frozen=True)
class CellOutput:
    """What a cell gives back to the driver, which alone writes: its results.jsonl lines (one per label, in
    order), its images (uint8), its trace columns (None: the algorithm keeps none), the NFE it spent, and each
    image's features and logits under the task's extractor (None: none)."""

    lines: tuple[str, ...]
    images: np.ndarray
    trace: dict[str, np.ndarray] | None
    nfe: int
    features: dict[str, np.ndarray] | None = None


def compute_cell(task: CellTask, callback: ProgressCallback | None = None) -> CellOutput:
    """Search one cell and make its records; touches no file (it may run on a worker without the run's disk)."""
    cell = task.cell
    problem = cell_problem(task, cell, callback)
    result = get_algorithm(cell.run.algorithm, **cell.run.algorithm_params(task.schedules, cell.column.name)
                           ).run(problem)
    return cell_output(task, cell, problem.cond, result)


def cell_problem(task: CellTask, cell: Cell, callback: ProgressCallback | None = None) -> Problem:
    """The batch-invariant Problem of `cell` (one of task.cells) over the task's labels."""
    denoiser = task.model.load()
    problem, _ = make_problem(reward=reward_named(cell.column.reward, cell.column.reward_args), labels=task.labels,
                              seeds=task.seeds, backend=task.model.backend, denoiser=denoiser,
                              guidance=task.model.guidance, sampler=denoiser.default_sampler(task.sampler, task.steps),
                              max_batch=task.max_batch, batch_invariant=True, progress=callback or False)
    return problem


def cell_output(task: CellTask, cell: Cell, cond: torch.Tensor, result: SearchResult,
                extra: dict[str, Any] | None = None) -> CellOutput:
    """The output of `cell` (one of task.cells) from its search result: records (with `extra` fields), uint8
    images, trace columns, and the features of its images."""
    missing = list(task.label_indices)
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
        **({"run_steps": cell.run.steps} if cell.run.steps is not None else {}),
        **({"arm": result.config["arms"][row]} if "arms" in result.config else {}),
        **(extra or {}),
    }, cell) + "\n" for row, k in enumerate(missing))
    return CellOutput(lines, to_uint8(result.images), trace, int(result.nfe.sum()),
                      None if task.extractor is None else image_features(task.extractor, result.images))


def image_features(name: str, images: torch.Tensor) -> dict[str, np.ndarray]:
    """The features (float16: what FID, KID and precision/recall need, at half the disk) and logits (float32: the
    Inception Score's) of images as their uint8 files hold them, under the registered extractor `name`."""
    extractor = cached(("extractor", name), lambda: get_extractor(name))
    shown = quantized(images).cpu()
    kept = {"features": extractor.features(shown).numpy().astype(np.float16)}
    try:
        kept["logits"] = extractor.logits(shown).numpy().astype(np.float32)
    except NoiseSearchError:  # an extractor that is no classifier has no logits (and no Inception Score)
        pass
    return kept


def strict_json(record: dict[str, Any], cell: Cell) -> str:
    """A record as strict JSON (no bare NaN), or a one-line error naming the cell."""
    try:
        return json.dumps(record, allow_nan=False)
    except ValueError:
        raise NoiseSearchError(f"cell {cell.slug} produced NaN or inf (evaluator or timing): not recorded") from None


def expected_nfe(cell: Cell, sampler: Sampler, denoiser: Denoiser, n: int, schedules: dict[str, SearchSchedule]
                 ) -> int:
    """NFE the cell will spend (MCTS: its per-step estimate), for the progress bar."""
    algo = get_algorithm(cell.run.algorithm, **cell.run.algorithm_params(schedules, cell.column.name))
    return cost.nfe(algo.nfe_estimate(sampler), denoiser) * n


def cell_memory_mb(denoiser: Denoiser, sampler: Sampler, max_batch: int) -> float:
    """A cell's memory estimate: the denoiser's weights and the peak growth of one call of max_batch rows."""
    probe = probe_call(denoiser, max_batch, float(sampler.sigmas[0]), torch.zeros(1, dtype=torch.long))
    return module_mb(denoiser) + probe.peak_mb
