"""MkDocs hook: one page per algorithm family, generated at build time from the registry, so that the pages
cannot drift from the code: for each algorithm its source paper (`source`), what it does (its docstring),
its parameters and defaults (its dataclass fields), its NFE per image (`nfe_doc`, whose terms live in
`noisesearch.cost`) and its measured rows of the committed `families` reports (EDM and rectified flow).

mkdocs.yml lists the pages under "Algorithm families"; a family missing there is a page left out of the
navigation, which `mkdocs build --strict` refuses.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

from mkdocs.structure.files import File, Files

from noisesearch.search import algorithm_class
from noisesearch.search.registry import algorithm_names

FAMILIES = {  # family: (page title, what the family shares)
    "baseline": ("Baseline: no search", "The sampler alone: what every search is measured against."),
    "initial": ("Searches over the initial noise",
                "The initial noise x_T is searched; every candidate is a whole trajectory scored on its final image."),
    "reference": ("ε-greedy", "The paper's Algorithm 1: at every searchable step, K iterations of N candidates "
                              "mixing global draws (probability ε) and local moves around the pivot."),
    "local": ("Zero-order search", "ε-greedy with ε = 0: local moves around the pivot only."),
    "window": ("ε-greedy in a σ window", "ε-greedy that searches hard only where the reward moves (Appendix J.1)."),
    "tree": ("Tree searches: beam and MCTS", "Trees over the step noise: beams kept by reward, or UCT simulations."),
    "paths": ("Search over paths", "Paths re-noised and denoised again from an intermediate noise level."),
    "particles": ("Particles: Feynman–Kac steering", "Particles resampled by potentials of their rewards."),
    "value_decoding": ("Value decoding: SVDD", "Per-step candidates valued by the reward of their x0 prediction."),
    "evolutionary": ("Evolutionary search: EvoSearch", "Generations of elites and mutated tournament winners."),
    "budget_forcing": ("Rollover budget forcing", "Per-step candidates until one beats the incumbent; unspent NFE "
                                                  "rolls over to the next step."),
    "adaptive": ("Adaptive ε-greedy", "ε-greedy under a schedule calibrated for the reward and the budget."),
    "online": ("Online adaptive ε-greedy", "Adaptive ε-greedy that learns its schedule while conditions stream."),
}
REPORTS = {"EDM": "results/families/report.md", "rectified flow": "results/families_flow/report.md"}


def on_files(files: Files, config) -> Files:
    docs = Path(config["docs_dir"])
    for family, page in family_pages(docs).items():
        files.append(File.generated(config, f"algorithms/{family}.md", content=page))
    return files


def family_pages(docs: Path) -> dict[str, str]:
    by_family: dict[str, list[type]] = {}
    for name in algorithm_names():
        cls = algorithm_class(name)
        if cls.family not in FAMILIES:
            raise ValueError(f"algorithm {name}'s family {cls.family!r} has no page: add it to FAMILIES")
        by_family.setdefault(cls.family, []).append(cls)
    return {family: page(family, classes, docs) for family, classes in by_family.items()}


def page(family: str, classes: list[type], docs: Path) -> str:
    title, shared = FAMILIES[family]
    parts = [f"# {title}\n\n{shared} Costs: [Algorithms](../algorithms.md#cost); every NFE figure is the "
             "`Problem`'s meter, checked against these formulas by the test suite.\n"]
    for cls in classes:
        parts.append(section(cls, docs))
    return "\n".join(parts)


def section(cls: type, docs: Path) -> str:
    doc = inspect.cleandoc(cls.__doc__ or "").split("\n\nNFE per image:")[0]
    lines = [f"## `{cls.name}`\n", f"**Source**: {cls.source or 'none recorded'}.\n", doc + "\n",
             f"**NFE per image**: {cls.nfe_doc}; ×2 with classifier-free guidance.\n"]
    fields = [f for f in dataclasses.fields(cls) if f.init]
    if fields:
        lines += ["| parameter | type | default |", "| --- | --- | --- |"]
        lines += [f"| `{f.name}` | `{f.type}` | `{default_of(f)}` |" for f in fields]
        lines.append("")
    for model, report in REPORTS.items():
        rows = measured_rows(docs / report, cls.name)
        if rows:
            lines += [f"Measured on the embedded {model} model ([report](../{report})): mean reward ± std over "
                      "the labels (standard error) and the held-out evaluator per reward column, NFE per image, "
                      "the run's wall time.\n", *rows, ""]
    return "\n".join(lines)


def default_of(field: dataclasses.Field) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return "required"


def measured_rows(report: Path, name: str) -> list[str]:
    """The header and the rows of `name` in the first table of a report (its method column names the run)."""
    if not report.is_file():
        return []
    table = []
    for line in report.read_text().splitlines():
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    rows = [r for r in table[2:] if r.split("|")[1].strip() == name or r.split("|")[1].strip().startswith(f"{name} (")]
    return table[:2] + rows if rows else []
