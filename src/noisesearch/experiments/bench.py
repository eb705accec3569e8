"""Run a preset's grid of searches into a run directory, appending every finished cell; rerunning resumes.

The driver: it takes the run directory's lock, checks and records the settings (experiments.store), plans the
cells that lack records (experiments.cells), calibrates the schedules that calibrated runs need, and hands the
cells to an executor (serial in this process, a local process pool, or Ray: noisesearch.executors). Each cell
is computed as pure data and this process alone writes it, so the store's integrity rules hold for every
executor. A cell that fails is logged in cells.jsonl with its error, and the others go on.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from noisesearch.backends import get_backend
from noisesearch.backends.registry import check_device, check_dtype, model_identity
from noisesearch.batching import parse_max_batch
from noisesearch.denoiser import Denoiser
from noisesearch.drivers.calibrate import calibrate
from noisesearch.errors import NoiseSearchError
from noisesearch.executors import Executor, Resources, SerialExecutor
from noisesearch.experiments.cells import (
    LOADED,
    CellTask,
    ModelSource,
    cell_memory_mb,
    expected_nfe,
    preset_cells,
)
from noisesearch.experiments.pools import compute_task, pool_groups
from noisesearch.experiments.presets import Preset, RewardColumn
from noisesearch.experiments.store import (
    CELL_LOG,
    RESULTS,
    check_reuse_source,
    check_run_files,
    copy_results,
    copy_schedules,
    log_cell,
    prepare_run_dir,
    read_results,
    resume_settings,
    run_dir_lock,
    run_settings,
    write_cell,
)
from noisesearch.progress import BarProgress
from noisesearch.rewards.registry import is_set_level
from noisesearch.sampling import Sampler, make_sampler
from noisesearch.search import algorithm_class
from noisesearch.search.step_schedule import SearchSchedule
from noisesearch.seeds import bench_seed, check_seed, draw_labels


def run_bench(preset: Preset, out: Path, *, seed: int | None = None, max_batch: int = 16, progress: bool = True,
              device: str = "cpu", dtype: str = "float32", backend: str | None = None, model: str | None = None,
              sampler: str | None = None, model_loader: Callable[[float], Denoiser] | None = None,
              reuse: Sequence[Path] = (), trust_model_code: bool = False, executor: Executor | None = None) -> Path:
    """Run (or resume) every cell of `preset` into directory `out`; returns the results path. Cells run on
    the `backend`'s model (default: the preset's; `model`: its path; `model_loader(guidance)` replaces the
    loader, and `model` then only names it in the cell keys) with its default sampler or the registered
    `sampler`; conditions are labels drawn from `seed` (default: the preset's); the network runs on `device`
    in `dtype` (rewards on the CPU, in float32).
    Results of identical cells (equal keys: see Cell.key) in the `reuse` run directories are copied instead
    of rerun, and so are their schedules calibrated exactly as `preset` would calibrate them.
    `trust_model_code` lets the backend load a model file that needs code to load.

    Cells (and calibrations) run on `executor` (default: serial, in this process); only this process writes
    the directory, one write per finished cell. A cell that fails is logged in cells.jsonl with its error and
    the others go on; the run then ends in a one-line NoiseSearchError naming the failures (a rerun retries them).

    The whole run holds `out`'s lock (a second bench on `out` gets a one-line NoiseSearchError); a resume
    with other settings than out/run.json's is refused; a directory of an older format is migrated first."""
    backend = backend or preset.backend
    spec = get_backend(backend)
    if spec.conditions != "labels":
        raise NoiseSearchError(f"bench draws class labels; the {backend} backend takes prompts")
    seed = preset.seed if seed is None else seed
    check_seed(seed, "the bench seed")
    bench_seed(seed, preset.repeats - 1, preset.labels - 1)  # the largest sample seed, checked before writing
    max_batch = parse_max_batch(max_batch, fixed_for="bench")
    out = Path(out)
    for source in reuse:
        check_reuse_source(Path(source), read=True)
    sampler_name = sampler or spec.default_sampler
    make_sampler(sampler_name, preset.steps)  # an unknown sampler is an error before anything is written
    check_device(device)
    check_dtype(dtype)
    if model_loader is not None and dtype != "float32":
        raise NoiseSearchError(f"bench cannot run a model_loader's model in {dtype}: load it in that dtype yourself "
                               "and leave dtype at float32")
    executor = executor or SerialExecutor()
    executor.check(Resources())  # a cluster too small for a cell of the executor's CPUs and GPUs
    if out.is_dir():
        check_run_files(out)
    settings = run_settings(preset, seed, sampler_name, backend, model_identity(model), max_batch, device,
                            spec.features, spec.reference, dtype)
    with locked_run_dir(out):
        settings = resume_settings(out, settings)
        source = partial(ModelSource, settings["backend"], settings["model"], device=device, dtype=dtype,
                         trust_model_code=trust_model_code, loader=model_loader)
        try:
            return run_locked(preset, out, settings, spec.evaluator, progress, source, reuse, executor)
        finally:
            LOADED.clear()


def holds_results(out: Path) -> bool:
    """Whether a run directory holds anything of value: a record, a logged cell or a calibrated schedule."""
    results = out / RESULTS
    return ((results.is_file() and results.stat().st_size > 0) or (out / CELL_LOG).exists()
            or any((out / "schedules").glob("*.json")))


@contextmanager
def locked_run_dir(out: Path) -> Iterator[None]:
    """Hold `out`'s lock (see run_dir_lock) while the block runs; on an exception, remove what this start created
    where `out` did not exist or was an empty directory before, and it holds nothing of value yet (no record, no
    cell logged, no calibrated schedule), still holding the lock: a failed start leaves nothing behind. A
    directory that held anything before is never touched."""
    missing = [p for p in (out, *out.parents) if not p.exists()]
    top = missing[-1] if missing else None
    empty = top is None and out.is_dir() and not any(out.iterdir())

    def clean() -> None:
        if holds_results(out):
            return
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
        elif empty and out.is_dir():
            for part in list(out.iterdir()):
                if part.is_dir():
                    shutil.rmtree(part, ignore_errors=True)
                else:
                    part.unlink(missing_ok=True)

    try:
        with run_dir_lock(out):
            try:
                yield
            except BaseException:
                clean()
                raise
    except BaseException:
        clean()  # where taking the lock failed after making the directory
        raise


def run_locked(preset: Preset, out: Path, settings: dict[str, Any], evaluator_name: str | None, progress: bool,
               source: Callable[[float], ModelSource], reuse: Sequence[Path], executor: Executor) -> Path:
    """run_bench's work once it holds `out`'s lock and has checked `settings` (see run_settings)."""
    seed, max_batch = settings["seed"], settings["max_batch"]

    def denoiser(guidance: float) -> Denoiser:
        return source(guidance).load()

    def sampler_of(guidance: float, steps: int | None = None) -> Sampler:
        return denoiser(guidance).default_sampler(settings["sampler"], steps or preset.steps)

    shared = {name: settings[name] for name in ("seed", "steps", "backend", "model", "max_batch")}
    if settings["device"] != "cpu":  # a cell's key names its device where it is not the CPU
        shared["device"] = settings["device"]
    if settings["dtype"] != "float32":  # and its dtype where it is not float32
        shared["dtype"] = settings["dtype"]
    cells = preset_cells(preset, lambda run, column: {**shared, **run.own_steps,
                                                      "sampler": sampler_of(column.guidance, run.steps).to_dict()})
    if len({c.key for c in cells}) < len(cells) or len({c.slug for c in cells}) < len(cells):
        raise NoiseSearchError(f"preset '{preset.name}' has two cells of one name: give runs and columns "
                               "distinct parameters and names")
    memory = {g: cell_memory_mb(denoiser(g), sampler_of(g), max_batch) if executor.schedules_memory else None
              for g in {column.guidance for column in preset.rewards}}
    for need in set(memory.values()):  # the cluster could never hold a cell: refused before anything is written
        executor.check(Resources(memory_mb=need))
    prepare_run_dir(out, preset, seed, settings)
    results = out / RESULTS
    labels = draw_labels(preset.labels, seed)
    for reused in reuse:
        copy_schedules(Path(reused), out, settings, [column.name for column in preset.rewards])
        copy_results(Path(reused), out, cells, labels, seed)
    done = {(r["cell"], r["label_index"]) for r in read_results(results)}
    todo = []
    for cell in cells:
        missing = [k for k in range(preset.labels) if (cell.key, k) not in done]
        in_order = algorithm_class(cell.run.algorithm).learns_across_conditions or is_set_level(cell.column.reward)
        if missing and len(missing) < preset.labels and in_order:
            raise NoiseSearchError(f"{out} holds part of the stream of cell {cell.slug}, whose results depend on the "
                                   "labels before them: use another --out for a stream of another length")
        if missing:
            todo.append((cell, missing))
    needed = {cell.run.calibrated_column(cell.column.name) for cell, _ in todo} - {None}
    schedules = calibrate_columns(preset, [c for c in preset.rewards if c.name in needed], out, denoiser,
                                  sampler_of, max_batch, progress, executor)
    tasks = [CellTask(cell, tuple(missing), tuple(labels[k] for k in missing),
                      tuple(bench_seed(seed, cell.repeat, k) for k in missing), source(cell.column.guidance),
                      settings["sampler"], cell.run.steps or preset.steps, max_batch,
                      {name: schedules[name] for name in {cell.run.calibrated_column(cell.column.name)} - {None}},
                      evaluator_name, settings["extractor"], tuple(c for c, _ in group) if len(group) > 1 else ())
             for group in pool_groups(todo) for cell, missing in group[:1]]
    total = sum(expected_nfe(t.cell, sampler_of(t.model.guidance, t.steps), denoiser(t.model.guidance),
                             len(t.labels), schedules) for t in tasks)
    bar = tqdm(total=total, unit="NFE", desc=f"bench {preset.name}", disable=not progress, dynamic_ncols=True)
    failed = []
    try:
        needs = [Resources(memory_mb=memory[t.model.guidance]) for t in tasks]
        for outcome in executor.map(compute_task, tasks, needs, callback=BarProgress(bar)):
            task = tasks[outcome.index]
            if outcome.ok:
                outputs = outcome.value if task.pooled else (outcome.value,)
                for cell, output in zip(task.cells, outputs, strict=True):
                    write_cell(out, cell, task.label_indices, output.images, output.trace, output.lines,
                               output.features)
                if not executor.reports_progress:
                    bar.update(outputs[0].nfe)
            else:
                failed.extend((cell.slug, outcome.error) for cell in task.cells)
            bar.set_postfix_str(task.cell.slug, refresh=False)
            for cell in task.cells:
                log_cell(out, cell, task.label_indices, outcome, executor)
    finally:
        bar.close()
    if failed:
        cells = sum(len(t.cells) for t in tasks)
        raise NoiseSearchError(f"{len(failed)} of {cells} cells failed, the others are recorded (first: "
                               f"{failed[0][0]}: {failed[0][1]}); errors in {out / CELL_LOG}; rerun the command to "
                               "retry the failed cells")
    return results


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
            schedule = calibrate(column.reward, preset.calibration, denoiser=denoiser(column.guidance),
                                 sampler=sampler_of(column.guidance), guidance=column.guidance, max_batch=max_batch,
                                 batch_invariant=True, evaluator=None, progress=progress, executor=executor,
                                 reward_args=column.reward_args)
            schedule.save(path)
        schedules[column.name] = SearchSchedule.load(path)
    return schedules
