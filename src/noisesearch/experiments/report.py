"""`noisesearch report RUN_DIR`: tables, plots and image grids from a bench run, never rerunning it.

Writes RUN_DIR/report/report.md and report.html (images inline): the blocks of every section in
`noisesearch.experiments.sections.SECTIONS` that applies to the run, in that order. The report only reads the
run's files (it writes nothing but its own output directory, and may run while a bench is still writing)."""

from __future__ import annotations

from pathlib import Path

from noisesearch.errors import NoiseSearchError
from noisesearch.experiments import sections
from noisesearch.experiments.document import Block, write_document
from noisesearch.experiments.store import Run, load_run


def build_blocks(run: Run, out: Path) -> list[Block]:
    return [block for section in sections.SECTIONS if section.applies(run) for block in section.blocks(run, out)]


def write_report(run_dir: Path, out: Path | None = None, reference: str | None = None) -> tuple[Path, Path]:
    """Write report.md and report.html (with its PNGs) for a bench run into `out` (default RUN_DIR/report);
    returns both paths. Population metrics compare with `reference` (a packaged reference's name or a
    .safetensors file; default: the one run.json names). Nothing else is written: the run's own files are only
    read. An `out` that is a file or the run directory itself is a one-line NoiseSearchError."""
    run = load_run(Path(run_dir))
    if reference is not None:
        run.reference = reference
    out = Path(out) if out is not None else Path(run_dir) / "report"
    if out.exists() and not out.is_dir():
        raise NoiseSearchError(f"--out {out} is a file: give a directory for the report")
    if out.resolve() == Path(run_dir).resolve():
        raise NoiseSearchError(f"--out {out} is the run directory: give another directory for the report "
                               "(default RUN_DIR/report)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        return write_document(build_blocks(run, out), out)
    except OSError as err:
        raise NoiseSearchError(f"the report to {out} failed: {err.strerror} ({err.filename})") from None
