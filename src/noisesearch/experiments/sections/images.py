"""Image grids: one per (method, column) of the first repeat's images, in label order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisesearch.experiments.cells import preset_cells
from noisesearch.experiments.document import Block, Figure, Heading
from noisesearch.experiments.store import Run
from noisesearch.imaging import make_grid


def cell_images(run: Run) -> Iterator[tuple[Any, list[Path]]]:
    """The first repeat's cells with images, and their image files."""
    if run.preset is None:
        return
    for cell in preset_cells(run.preset):
        parts = run.cell_files("images", cell.slug) if cell.repeat == 0 else []
        if parts:
            yield cell, parts


def applies(run: Run) -> bool:
    return next(cell_images(run), None) is not None


def blocks(run: Run, out: Path) -> list[Block]:
    shown: list[Block] = [Heading(2, "Images (first repeat, in label order)")]
    for cell, parts in cell_images(run):
        images, order = [], []
        for part in parts:
            with np.load(part) as data:
                images.append(data["images"])
                order.append(data["label_index"])
        pixels = np.concatenate(images)[np.argsort(np.concatenate(order))]
        tensor = torch.from_numpy(pixels).float().div(127.5).sub(1)[:, None]
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"grid_{cell.slug}.png"
        make_grid(tensor, ncol=12, scale=2).save(path)
        shown.append(Figure(path, f"{cell.run.label}, {cell.column.name}"))
    return shown
