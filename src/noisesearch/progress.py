"""Progress events of a search (k-diffusion's `callback=` habit): a library user needs no tqdm to follow one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tqdm.auto import tqdm


@dataclass(frozen=True)
class ProgressEvent:
    """kind "start" (nfe: the NFE expected in all, None if unknown; desc: what runs), "nfe" (nfe: NFE just
    spent, summed over images) or "end"."""

    kind: str
    nfe: int | None = None
    desc: str = ""


ProgressCallback = Callable[[ProgressEvent], None]


class TqdmProgress:
    """A callback that shows one tqdm bar in NFE units per started search."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "start":
            self.bar = tqdm(total=event.nfe, desc=event.desc, unit="NFE", dynamic_ncols=True)
        elif event.kind == "nfe" and self.bar is not None:
            self.bar.update(event.nfe)
        elif event.kind == "end" and self.bar is not None:
            self.bar.close()
            self.bar = None


class BarProgress:
    """A callback that only advances an existing bar (e.g. a bench's bar over many searches)."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "nfe":
            self.bar.update(event.nfe)
