"""`noisesearch generate`: search thousands of conditions into a resumable data set (drivers.dataset).

The conditions (a file: prompts or labels one per line, or JSONL rows with a per-row seed and metadata) are cut
into shards of `shard_size` conditions; each shard is searched as one batch of conditions (one Problem, so calls
stay full) on an executor (serial, a local process pool, Ray: noisesearch.executors), whose workers load the
model once and serve all their shards. Only this process writes: each finished shard becomes one Parquet file,
written atomically, so a run killed at any point and started again with the same command computes only the
shards it lacks (a shard file that does not read back as its shard is recomputed). DIR/job.json binds the
directory to the settings and conditions that started it: other settings are a one-line refusal.

Why executor tasks and not Ray Data's `map_batches`: a shard is already a batch and a task's worker keeps its
model between tasks, and the resume rules need the one writer and the shard-per-file layout that Ray Data's
writers (which write from the workers, with their own file names) do not give.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from noisesearch import cost
from noisesearch.api import plan_search
from noisesearch.backends import get_backend, load_backend_denoiser
from noisesearch.backends.registry import check_device, check_dtype, model_identity
from noisesearch.batching import DEFAULT_MAX_BATCH, parse_max_batch
from noisesearch.drivers.dataset import (
    import_pyarrow,
    read_records,
    remove_temporaries,
    shard_path,
    shard_problem,
    write_shard,
)
from noisesearch.environment import environment
from noisesearch.errors import NoiseSearchError
from noisesearch.executors import Executor, Resources, SerialExecutor
from noisesearch.files import check_writable_folder, exclusive_lock, read_json_file, write_atomically
from noisesearch.imaging import png_bytes, to_uint8
from noisesearch.models.labels import check_labels
from noisesearch.progress import ProgressCallback, ProgressEvent
from noisesearch.rewards.registry import check_evaluator, check_search_reward, is_set_level, reward_factory
from noisesearch.sampling import make_sampler
from noisesearch.search import algorithm_class, get_algorithm
from noisesearch.seeds import check_seed

FORMAT = 1  # of a generate directory, kept in job.json
JOB = "job.json"
LOCK = "job.lock"
SUMMARY = "summary.json"
DEFAULT_SHARD_SIZE = 32
JSONL = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Condition:
    """Row `index` of a conditions file: a label or a prompt, its sample seed and the row's other fields."""

    index: int
    value: int | str
    seed: int
    metadata: dict[str, Any]


def read_conditions(path: Path, kind: str, seed: int = 0) -> list[Condition]:
    """The conditions of `path`: `kind` "label" or "prompt". A .jsonl file holds one JSON object per line with the
    key `kind` and optionally `seed` (other keys are kept as metadata); any other file one label or prompt per
    line (blank lines skipped). Row i without a seed of its own uses `seed + i`, as `sample` does."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise NoiseSearchError(f"cannot read --conditions {path} ({err.strerror})") from None
    except UnicodeDecodeError:
        raise NoiseSearchError(f"--conditions {path} is not UTF-8 text") from None
    jsonl = Path(path).suffix.lower() in JSONL
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"--conditions {path} line {number}"
        row = parse_row(line, kind, where) if jsonl else {kind: line.strip()}
        value = row.pop(kind)
        if kind == "label":
            value = parse_label(value, where)
        elif not isinstance(value, str) or not value.strip():
            raise NoiseSearchError(f"{where}: a prompt must be non-empty text, got {json.dumps(value)}")
        own = row.pop("seed", None)
        rows.append((value, own, row, where))
    if not rows:
        raise NoiseSearchError(f"--conditions {path} holds no conditions")
    return [Condition(i, value, check_seed(seed + i if own is None else own, f"the seed of {where}"), meta)
            for i, (value, own, meta, where) in enumerate(rows)]


def parse_row(line: str, kind: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise NoiseSearchError(f"{where} is not JSON ({err.msg})") from None
    if not isinstance(row, dict) or kind not in row:
        raise NoiseSearchError(f"{where}: each line must be a JSON object with a \"{kind}\" key")
    return row


def parse_label(value: Any, where: str) -> int:
    try:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise NoiseSearchError(f"{where}: a label must be an integer, got {json.dumps(value)}") from None


def conditions_digest(conditions: Sequence[Condition]) -> str:
    """A hash of the conditions (values, seeds, metadata), whatever file layout held them."""
    data = json.dumps([[c.value, c.seed, c.metadata] for c in conditions], sort_keys=True, default=str)
    return hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True)
class ShardTask:
    """One shard as plain picklable data: its number, its conditions and the job's settings."""

    shard: int
    conditions: tuple[Condition, ...]
    settings: dict[str, Any]


@dataclass(frozen=True)
class ShardOutput:
    """A shard's rows (the data set's columns) and the NFE it spent."""

    rows: list[dict[str, Any]]
    nfe: int


WORKER_MODELS: dict[Any, Any] = {}  # this process's loaded models: a worker serves all its shards with one


def shard_model(settings: dict[str, Any]) -> dict[str, Any]:
    """The make_problem argument that brings the job's model, loaded once per process: a prompt backend's
    pipeline (each shard encodes its own prompts), else the denoiser."""
    key = tuple(settings[k] for k in ("backend", "model", "guidance", "device", "dtype", "trust_model_code"))
    if key not in WORKER_MODELS:
        if get_backend(settings["backend"]).conditions == "prompts":
            from noisesearch.backends.diffusers_backend import load_pipeline
            from noisesearch.backends.registry import DTYPES

            WORKER_MODELS[key] = {"pipeline": load_pipeline(settings["model"], DTYPES[settings["dtype"]],
                                                            settings["device"])}
        else:
            WORKER_MODELS[key] = {"denoiser": load_backend_denoiser(
                settings["backend"], settings["model"], settings["guidance"], device=settings["device"],
                dtype=settings["dtype"], trust_model_code=settings["trust_model_code"])}
    return WORKER_MODELS[key]


def compute_shard(task: ShardTask, callback: ProgressCallback | None = None) -> ShardOutput:
    """Search one shard's conditions as one batch and make its rows; touches no file."""
    s = task.settings
    kind = s["condition"]
    values = [c.value for c in task.conditions]
    planned = plan_search(
        algorithm=s["algorithm"], reward=s["reward"], reward_args=s["reward_args"], evaluator=s["evaluator"],
        **{"labels" if kind == "label" else "prompts": values}, seeds=[c.seed for c in task.conditions],
        backend=s["backend"], **shard_model(s), guidance=s["guidance"], sampler=s["sampler"], steps=s["steps"],
        max_batch=s["max_batch"], nfe_budget=s["nfe_budget"], device=s["device"], dtype=s["dtype"],
        progress=callback or False, keep_candidates=s["keep_candidates"], **s["params"])
    result = planned.run()
    config = json.dumps({k: v for k, v in result.config.items() if k not in ("labels", "prompts", "seeds")},
                        sort_keys=True, default=str)
    pixels = to_uint8(result.images)
    rows = []
    for k, condition in enumerate(task.conditions):
        row = {"index": condition.index, kind: condition.value, "seed": condition.seed,
               "metadata": json.dumps(condition.metadata, sort_keys=True), "reward": float(result.rewards[k]),
               "evaluator": None if result.evaluator_rewards is None else float(result.evaluator_rewards[k]),
               "nfe": int(result.nfe[k]), "wall_time_s": result.wall_time / len(task.conditions),
               "algorithm": s["algorithm"], "reward_name": s["reward"], "config": config,
               "image": image_cell(pixels[k], condition.index)}
        if s["keep_candidates"]:
            row |= candidate_columns(planned.problem.candidates.get(k), condition.index)
        rows.append(row)
    return ShardOutput(rows, int(result.nfe.sum()))


def image_cell(pixels: Any, index: int, suffix: str = "") -> dict[str, Any]:
    """An image as the struct that `datasets` reads as its Image feature."""
    return {"bytes": png_bytes(pixels), "path": f"{index:06d}{suffix}.png"}


def candidate_columns(kept: Any, index: int) -> dict[str, Any]:
    """The candidate columns of one condition: every candidate of its last scoring round with its score, and the
    best (chosen) and worst (rejected) of them as a preference pair; empty where its search compared none."""
    if kept is None:
        return {"candidate_images": [], "candidate_rewards": [], "chosen": None, "rejected": None,
                "chosen_reward": None, "rejected_reward": None}
    images, scores = kept
    pixels = to_uint8(images)
    best, worst = int(scores.argmax()), int(scores.argmin())
    return {"candidate_images": [image_cell(p, index, f"_candidate{j}") for j, p in enumerate(pixels)],
            "candidate_rewards": [float(v) for v in scores], "chosen": image_cell(pixels[best], index, "_chosen"),
            "rejected": image_cell(pixels[worst], index, "_rejected"), "chosen_reward": float(scores[best]),
            "rejected_reward": float(scores[worst])}


@dataclass(frozen=True)
class GenerateSummary:
    """What a generate run did: conditions in the data set and computed now, failures, wall seconds, NFE spent
    now, and the data set's mean reward and evaluator score (None: no evaluator)."""

    out: Path
    conditions: int
    computed: int
    failed: int
    seconds: float
    nfe: int
    mean_reward: float
    mean_evaluator: float | None

    def line(self, reward: str) -> str:
        rate = (f"{self.computed / self.seconds:.2f} images/s, {self.nfe / self.seconds:,.0f} NFE/s"
                if self.computed and self.seconds > 0 else "nothing left to compute")
        ev = "" if self.mean_evaluator is None else f", evaluator {self.mean_evaluator:.4f}"
        return (f"generate: {self.conditions} conditions ({self.computed} now, {self.failed} failed) in "
                f"{self.seconds:.1f} s: {rate}; mean {reward} reward {self.mean_reward:.4f}{ev} -> {self.out}")


SETTING_FLAGS = {"algorithm": "--algorithm", "params": "the algorithm parameters", "reward": "--reward",
                 "reward_args": "--reward-arg", "evaluator": "--evaluator", "backend": "--backend", "model": "--model",
                 "sampler": "--sampler", "steps": "--steps", "guidance": "--guidance", "seed": "--seed",
                 "max_batch": "--max-batch", "nfe_budget": "--nfe-budget", "device": "--device", "dtype": "--dtype",
                 "shard_size": "--shard-size", "keep_candidates": "--keep-candidates",
                 "trust_model_code": "--trust-model-code", "condition": "the conditions' kind"}


def job_settings(*, algorithm: str, params: dict[str, Any], reward: str, reward_args: dict[str, Any] | None,
                 evaluator: str | None, backend: str, model: str | None, sampler: str | None, steps: int,
                 guidance: float | None, seed: int, max_batch: int, nfe_budget: int | None, device: str, dtype: str,
                 shard_size: int, keep_candidates: bool, trust_model_code: bool) -> dict[str, Any]:
    """The job's settings, checked before anything loads or is written (one-line errors)."""
    spec = get_backend(backend)
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise NoiseSearchError(f"--shard-size must be an integer of at least 1, got {shard_size}")
    cls = algorithm_class(algorithm)
    if cls.learns_across_conditions:
        raise NoiseSearchError(f"'{algorithm}' learns across conditions, but generate searches its shards "
                               "independently: use `noisesearch sample --online` for a stream")
    check_search_reward(reward)
    if is_set_level(reward_factory(reward)):
        raise NoiseSearchError(f"reward '{reward}' is set-level (its scores depend on every earlier condition), but "
                               "generate searches its shards independently: use `noisesearch sample`")
    if keep_candidates and cls.family == "baseline":
        raise NoiseSearchError(f"--keep-candidates keeps the candidates a search compared; '{algorithm}' compares "
                               "none: choose a search")
    get_algorithm(algorithm, **params)  # unknown or bad parameters, before the model loads
    check_evaluator(evaluator)
    check_device(device)
    check_dtype(dtype)
    make_sampler(sampler or spec.default_sampler, steps)
    if spec.needs_model and model is None:
        raise NoiseSearchError(f"the {backend} backend needs --model PATH ({spec.model_help})")
    if model is not None and spec.conditions == "labels" and not Path(model).expanduser().exists():
        raise NoiseSearchError(f"--model {model} does not exist")
    return {"algorithm": algorithm, "params": params, "reward": reward, "reward_args": reward_args or {},
            "evaluator": spec.evaluator if evaluator == "auto" else evaluator, "backend": backend,
            "model": model_identity(model),
            "sampler": sampler, "steps": steps, "guidance": spec.guidance_or_default(guidance), "seed": seed,
            "max_batch": parse_max_batch(max_batch), "nfe_budget": nfe_budget,
            "device": device, "dtype": dtype, "shard_size": shard_size, "keep_candidates": keep_candidates,
            "trust_model_code": trust_model_code, "condition": "label" if spec.conditions == "labels" else "prompt"}


def bind_job(out: Path, settings: dict[str, Any], conditions: Sequence[Condition], command: str) -> None:
    """Write out/job.json for a new job, or check that an existing one has these settings and conditions."""
    digest = {"count": len(conditions), "sha256": conditions_digest(conditions)}
    path = out / JOB
    if not path.exists():
        write_atomically(path, json.dumps({"format": FORMAT, "settings": settings, "conditions": digest,
                                           "command": command}, indent=2, default=str) + "\n")
        return
    job = read_json_file(path, "the job file")
    if not isinstance(job, dict) or job.get("format") != FORMAT or not isinstance(job.get("settings"), dict):
        raise NoiseSearchError(f"{path} is not a generate job of format {FORMAT}: use another --out")
    for name, value in settings.items():
        before = job["settings"].get(name)
        if json.loads(json.dumps(value, default=str)) != before:
            raise NoiseSearchError(f"{out} was started with {SETTING_FLAGS[name]} {shown_setting(before)}, not "
                                   f"{shown_setting(value)}: rerun with its settings, or use another --out")
    if job.get("conditions") != digest:
        raise NoiseSearchError(f"{out} was started with other conditions ({job.get('conditions', {}).get('count')} "
                               f"rows, these are {len(conditions)} or differ): rerun with its file, or use another "
                               "--out")


def shown_setting(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "(none)"
    return "(none)" if value is None else str(value)


def run_generate(conditions: Path, out: Path, *, algorithm: str = "eps_greedy", params: dict[str, Any] | None = None,
                 reward: str = "classifier", reward_args: dict[str, Any] | None = None, evaluator: str | None = "auto",
                 backend: str = "embedded", model: str | None = None, sampler: str | None = None, steps: int = 18,
                 guidance: float | None = None, seed: int | None = None, max_batch: int = DEFAULT_MAX_BATCH,
                 nfe_budget: int | None = None, device: str = "cpu", dtype: str = "float32",
                 shard_size: int = DEFAULT_SHARD_SIZE, keep_candidates: bool = False, trust_model_code: bool = False,
                 executor: Executor | None = None, progress: bool = True, command: str = "") -> GenerateSummary:
    """Search every condition of the file `conditions` with `algorithm` (its `params`) against `reward` into the
    data set at `out` (drivers.dataset), shard by shard on `executor` (default: serial, in this process), or
    resume it: shards already written are kept. Settings as for `search`; `keep_candidates` also stores each
    condition's last compared candidates with their scores and its best and worst as a preference pair.
    Failed shards are reported in a one-line NoiseSearchError after the others are written (a rerun retries
    them)."""
    import_pyarrow()
    settings = job_settings(algorithm=algorithm, params=params or {}, reward=reward, reward_args=reward_args,
                            evaluator=evaluator, backend=backend, model=model, sampler=sampler, steps=steps,
                            guidance=guidance, seed=check_seed(0 if seed is None else seed), max_batch=max_batch,
                            nfe_budget=nfe_budget, device=device, dtype=dtype, shard_size=shard_size,
                            keep_candidates=keep_candidates, trust_model_code=trust_model_code)
    rows = read_conditions(conditions, settings["condition"], settings["seed"])
    executor = executor or SerialExecutor()
    executor.check(Resources())  # a cluster too small for a shard of the executor's CPUs and GPUs
    check_with_model(rows, settings)
    out = Path(out)
    check_writable_folder(out, f"--out {out}")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(out / LOCK, f"another generate is writing to {out}: let it finish, or use another "
                                        "--out"):
            bind_job(out, settings, rows, command)
            with (out / "environment.jsonl").open("a") as f:
                f.write(json.dumps(environment(device) | executor.describe(), default=str) + "\n")
            return run_shards(out, settings, rows, executor, progress)
    except BaseException:
        if created and not any((out / "data").glob("train-*.parquet")):
            shutil.rmtree(out, ignore_errors=True)  # a failed start leaves nothing behind
        raise


def check_with_model(rows: Sequence[Condition], settings: dict[str, Any]) -> None:
    """One-line errors, before anything is written, for a label the model does not take and for a hard NFE budget
    below the algorithm's formula (label backends: the model loads here once, and the serial executor's shards
    reuse it; prompt backends find these in their first shard)."""
    if settings["condition"] != "label":
        return
    denoiser = shard_model(settings)["denoiser"]
    if denoiser.label_dim is not None:
        try:
            check_labels(torch.tensor([c.value for c in rows]), denoiser.label_dim)
        except NoiseSearchError:  # name the first condition it refuses
            for c in rows:
                try:
                    check_labels(torch.tensor([c.value]), denoiser.label_dim)
                except NoiseSearchError as err:
                    raise NoiseSearchError(f"--conditions, condition {c.index + 1}: {err}") from None
    sampler = denoiser.default_sampler(settings["sampler"] or get_backend(settings["backend"]).default_sampler,
                                       settings["steps"])
    formula = get_algorithm(settings["algorithm"], **settings["params"]).nfe_formula(sampler)
    if settings["nfe_budget"] is not None and formula is not None:
        need = cost.nfe(formula, denoiser)
        if need > settings["nfe_budget"]:
            raise NoiseSearchError(f"{settings['algorithm']} needs {need} NFE per image by its formula, over "
                                   f"--nfe-budget {settings['nfe_budget']}: raise the budget or lower the search "
                                   "parameters")


def run_shards(out: Path, settings: dict[str, Any], rows: Sequence[Condition], executor: Executor,
               progress: bool) -> GenerateSummary:
    """Compute the shards that `out` lacks (or holds damaged) and write each as it finishes."""
    remove_temporaries(out)
    size, kind, keep = settings["shard_size"], settings["condition"], settings["keep_candidates"]
    shards = [tuple(rows[k:k + size]) for k in range(0, len(rows), size)]
    todo = []
    for k, shard in enumerate(shards):
        path = shard_path(out, k, len(shards))
        if path.exists():
            problem = shard_problem(path, [c.index for c in shard], kind, keep)
            if problem is None:
                continue
            warnings.warn(f"shard {k} ({path.name}) is {problem}: computing it again", stacklevel=2)
            path.unlink()
        todo.append(ShardTask(k, shard, settings))
    start, nfe, written, failed = time.perf_counter(), 0, 0, []
    bar = tqdm(total=sum(len(t.conditions) for t in todo), unit="cond", desc="generate", disable=not progress,
               dynamic_ncols=True)
    meter = NfeMeter(bar, start)
    try:
        for outcome in executor.map(compute_shard, todo, callback=meter):
            task = todo[outcome.index]
            if outcome.ok:
                write_shard(shard_path(out, task.shard, len(shards)), outcome.value.rows, kind, keep)
                nfe += outcome.value.nfe
                written += 1
                meter.done(outcome.value.nfe)
                bar.update(len(task.conditions))
            elif not written and not failed:  # the first shard to finish failed: a mistake every shard would repeat
                raise NoiseSearchError(f"shard {task.shard} failed before any other finished, so the job stops: "
                                       f"{outcome.error}")
            else:
                failed.append((task.shard, outcome.error))
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    records = read_records(out)
    evaluated = [r["evaluator"] for r in records if r["evaluator"] is not None]
    lost = {k for k, _ in failed}
    summary = GenerateSummary(out, len(records), sum(len(t.conditions) for t in todo if t.shard not in lost),
                              sum(len(shards[k]) for k in lost), seconds, nfe,
                              sum(r["reward"] for r in records) / max(1, len(records)),
                              sum(evaluated) / len(evaluated) if evaluated else None)
    write_atomically(out / SUMMARY, json.dumps({
        "conditions": len(rows), "written": len(records), "nfe": sum(r["nfe"] for r in records),
        "mean_reward": summary.mean_reward, "mean_evaluator": summary.mean_evaluator,
        "last_run": {"computed": summary.computed, "failed_shards": sorted(lost), "seconds": seconds,
                     "nfe": nfe, "images_per_s": summary.computed / seconds if seconds > 0 else None,
                     "nfe_per_s": nfe / seconds if seconds > 0 else None, "executor": executor.describe()}},
        indent=2, default=str) + "\n")
    if failed:
        raise NoiseSearchError(f"{len(failed)} of {len(todo)} shards failed, the others are written (first: shard "
                               f"{failed[0][0]}: {failed[0][1]}); rerun the command to retry them")
    return summary


class NfeMeter:
    """The bar's NFE postfix: NFE spent so far and per second, advanced live by a task's progress events in this
    process, else when each shard finishes."""

    def __init__(self, bar: tqdm, start: float) -> None:
        self.bar, self.start, self.nfe, self.live = bar, start, 0, 0

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "nfe" and event.nfe:
            self.live += event.nfe
            self.show(self.nfe + self.live)

    def done(self, nfe: int) -> None:
        self.nfe += nfe
        self.live = 0
        self.show(self.nfe)

    def show(self, nfe: int) -> None:
        rate = nfe / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{nfe:,} NFE, {rate:,.0f} NFE/s", refresh=False)

