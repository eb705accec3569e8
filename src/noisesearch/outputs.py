"""Write a SearchResult to a directory: a PNG grid, one PNG per image and result.json."""

from __future__ import annotations

import json
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from noisesearch.errors import NoiseSearchError
from noisesearch.files import probe_writable
from noisesearch.imaging import make_grid, save_png
from noisesearch.types import SearchResult

RUN_FILES = ("result.json", "grid.png", "schedule.json")  # what `sample` writes in --out, besides images/
IMAGE_NAME = re.compile(r"[0-9]{3,}(_label[0-9]+)?\.png")  # images/NNN.png, images/NNN_labelL.png


def run_paths(out: Path) -> list[Path]:
    """The paths a `sample` run writes under `out` (its files, and the folder of its images)."""
    return [out / name for name in RUN_FILES] + [out / "images"]


def check_out_dir(out: Path, overwrite: bool) -> None:
    """A one-line error if `out` holds anything, unless `overwrite` (then `clear_run` removes the earlier run's
    files before the new run writes its own)."""
    if out.is_dir() and not overwrite and any(out.iterdir()):
        raise NoiseSearchError(f"--out {out} is not empty: give a new or empty directory, or add --overwrite to "
                               "replace the run there (its result.json, grid.png, schedule.json and images)")


def clear_run(out: Path) -> None:
    """Remove what an earlier `sample` run wrote in `out` (RUN_FILES and its images), and nothing else."""
    try:
        for path in run_paths(out)[:-1]:
            path.unlink(missing_ok=True)
        if (out / "images").is_dir():
            for image in (out / "images").iterdir():
                if IMAGE_NAME.fullmatch(image.name) and image.is_file():
                    image.unlink()
    except OSError as err:
        raise NoiseSearchError(f"cannot clear the earlier run in --out {out} ({err.strerror})") from None


def prepare_out_dir(out: Path, subdirs: tuple[str, ...] = ("images",), hint: str = "a directory path") -> Path:
    """Create `out` and its `subdirs` and check that each can be written, or raise a NoiseSearchError saying
    why not."""
    if out.exists() and not out.is_dir():
        raise NoiseSearchError(f"--out {out} is a file: give {hint}")
    try:
        for folder in (out, *(out / sub for sub in subdirs)):
            folder.mkdir(parents=True, exist_ok=True)
            probe_writable(folder)
    except OSError as err:
        raise NoiseSearchError(f"cannot write to --out {out} ({err.strerror}): choose a writable directory") from None
    return out


@contextmanager
def removed_if_failed(out: Path) -> Iterator[None]:
    """On an exception inside the block, remove the directories under `out` (and `out`) that did not exist
    before it and are still empty, so that a run that fails validation leaves nothing behind."""
    before = {p for p in [out, *out.parents] if p.exists()}
    try:
        yield
    except BaseException:
        if out.is_dir() and out not in before:
            for folder in sorted((p for p in out.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                if not any(folder.iterdir()):
                    folder.rmdir()
            if not any(out.iterdir()):
                out.rmdir()
        raise


def result_record(result: SearchResult, files: list[str], command: str | None = None) -> dict:
    """The JSON-ready summary of a result: per-image rewards and NFE, means, timing, config and the population
    metrics where they were computed."""
    cfg = result.config
    ev = result.evaluator_rewards
    kind = "label" if "labels" in cfg else "prompt"
    conditions = cfg.get("labels", cfg.get("prompts"))
    images = [
        {"index": k, kind: conditions[k], "seed": cfg["seeds"][k], "file": files[k],
         "reward": float(result.rewards[k]), "evaluator": None if ev is None else float(ev[k]),
         "nfe": int(result.nfe[k])}
        for k in range(len(files))
    ]
    record = {
        "algorithm": cfg["algorithm"],
        "reward": cfg["reward"],
        "mean_reward": float(result.rewards.mean()),
        "mean_evaluator": None if ev is None else float(ev.mean()),
        "nfe_per_image": result.nfe_per_image,
        "wall_time_s": round(result.wall_time, 3),
        "images": images,
        "config": cfg,
        "command": command,
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }
    return record if result.metrics is None else record | {"metrics": result.metrics}


def write_result(result: SearchResult, out: Path, command: str | None = None, trace: bool = False) -> dict:
    """Write grid.png, images/NNN_labelL.png and result.json under `out` (with `trace`, trace.npz: the search's
    trace columns and the detail it kept, where it records a trace); return the JSON record."""
    out = prepare_out_dir(out)
    files = []
    labels = result.config.get("labels")
    for k, img in enumerate(result.images):
        name = f"images/{k:03d}_label{labels[k]}.png" if labels is not None else f"images/{k:03d}.png"
        save_png(img, out / name)
        files.append(name)
    make_grid(result.images, ncol=min(10, len(files)), scale=2).save(out / "grid.png")
    record = result_record(result, files, command)
    try:
        text = json.dumps(record, indent=2, allow_nan=False, default=str)
    except ValueError:
        raise NoiseSearchError("the result holds NaN or inf, which strict JSON cannot store") from None
    (out / "result.json").write_text(text + "\n")
    if trace and result.trace is not None:
        np.savez_compressed(out / "trace.npz", **result.trace.columns(), **result.trace.detail())
    return record
