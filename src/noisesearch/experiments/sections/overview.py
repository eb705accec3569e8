"""The report's opening: which run, on which machine and commit, and what of it is missing or left out."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from noisesearch.experiments.cells import preset_cells
from noisesearch.experiments.document import Block, Heading, Paragraph, Table
from noisesearch.experiments.presets import RunSpec
from noisesearch.experiments.store import RESULTS, SETTINGS, Run, setting_of


def slot(run: RunSpec, column: str, repeat: int) -> str:
    """A cell's place in the preset's grid: its run, column and repeat (the settings all cells of a run
    directory share, since run.json refuses a resume with others)."""
    return json.dumps([run.algorithm, run.params, run.steps, column, repeat], sort_keys=True)


def missing_cells(run: Run) -> list[str]:
    """Cells of the run's preset with fewer results than labels."""
    if run.preset is None:
        return []
    counts: dict[str, int] = defaultdict(int)
    for r in run.records:
        if r["label_index"] < run.preset.labels:
            counts[slot(RunSpec.of(r), r["column"], r["repeat"])] += 1
    found = [(c, counts[slot(c.run, c.column.name, c.repeat)])
             for c in preset_cells(run.preset)]
    return [f"{c.run.label} / {c.column.name} / repeat {c.repeat}: {n} of {run.preset.labels} labels"
            for c, n in found if n < run.preset.labels]


def applies(run: Run) -> bool:
    return True


def blocks(run: Run, out: Path) -> list[Block]:
    env = run.environment
    dtype = setting_of(run.settings or {}, "dtype")
    shown: list[Block] = [
        Heading(1, f"noisesearch bench report: {run.preset.name if run.preset else run.directory}"),
        Paragraph(f"{len(run.records)} results from `{run.directory}`; seed {run.seed}; "
                  f"{'' if dtype == 'float32' else f'the network in {dtype} (autocast); '}"
                  f"noisesearch {env.get('noisesearch')}, torch {env.get('torch')}, "
                  f"{env.get('cpu_count')} CPUs ({env.get('processor') or 'model not recorded'}, "
                  f"{env.get('cpu_capability') or 'vector ISA not recorded'}), "
                  f"git commit {env.get('git_commit')}"
                  f"{' with uncommitted changes to the package' if env.get('git_dirty') else ''}."),
    ]
    left_out = []
    if run.duplicates:
        left_out.append(f"{run.duplicates} duplicate lines of {RESULTS} are left out (the first record of each "
                        "cell and label counts)")
    if run.torn:
        left_out.append(f"the last line of {RESULTS} is incomplete (a bench killed mid-write, or still writing) "
                        "and is left out")
    if run.settings is None:
        left_out.append(f"the run has no {SETTINGS} (written before bench kept its settings): it cannot be "
                        "resumed or reused")
    if left_out:
        shown.append(Paragraph("**Note**: " + "; ".join(left_out) + "."))
    missing = missing_cells(run)
    if missing:
        shown.append(Paragraph(f"**Partial run**: {len(missing)} cells are missing or incomplete:"))
        shown.append(Table(["missing cell"], [[m] for m in missing]))
    return shown
