"""The sections of `noisesearch report`, in the order the report shows them.

A section is any object (usually a module of this package) with `applies(run) -> bool` and
`blocks(run, out) -> list[Block]`, which writes its figures under `out`. Adding one is a module here and a
line in SECTIONS, or `register_section` from outside the package; the report driver never changes."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from noisesearch.experiments.document import Block
from noisesearch.experiments.sections import (
    adaptive,
    families,
    images,
    overview,
    population,
    results,
    scaling,
    stream,
    traces,
)
from noisesearch.experiments.store import Run


class Section(Protocol):
    def applies(self, run: Run) -> bool: ...

    def blocks(self, run: Run, out: Path) -> list[Block]: ...


SECTIONS: list[Section] = [overview, results, scaling, families, population, adaptive, stream, traces, images]


def register_section(section: Section) -> Section:
    """Append a section to the report (after the built-in ones)."""
    SECTIONS.append(section)
    return section
