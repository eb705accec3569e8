"""The documentation pages: every relative link and #anchor in README.md and docs/ resolves, and every page is
listed in docs/index.md and reachable from the README (generated reports under docs/results/ are not checked, nor
anchors into docs/api/, which mkdocstrings makes: tests/test_docs_site.py's strict build checks those)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").rglob("*.md")
                                         if not (p.parent.parent.name == "results" and p.name == "report.md"))


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(anchor(line.lstrip("#")))
    return found


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def broken(page: Path) -> list[str]:
    problems = []
    for target in links(page):
        path, _, name = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"{page.name}: {target} does not exist")
        elif name and dest.suffix == ".md" and dest.parent.name != "api" and name not in anchors(dest):
            problems.append(f"{page.name}: no #{name} in {dest.name}")
    return problems


def test_the_checker_finds_a_broken_link_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title here\n[ok](#title-here) [bad](#nowhere) [gone](b.md)\n")
    assert broken(tmp_path / "a.md") == ["a.md: no #nowhere in a.md", "a.md: b.md does not exist"]


def test_every_link_of_the_readme_and_the_docs_resolves():
    assert [problem for page in pages() for problem in broken(page)] == []


def test_every_docs_page_is_in_the_index_and_reachable_from_the_readme():
    linked: dict[Path, set[Path]] = {page: {(page.parent / t.partition("#")[0]).resolve() for t in links(page)
                                            if t.partition("#")[0]} for page in pages()}
    seen, todo = {ROOT / "README.md"}, [ROOT / "README.md"]
    while todo:
        for dest in linked.get(todo.pop(), ()):
            if dest not in seen:
                seen.add(dest)
                todo.append(dest)
    index = ROOT / "docs" / "index.md"
    docs = [p for p in pages() if p.parent != ROOT]
    listed = [p for p in docs if p.parent.name != "api" or p.name == "index.md"]  # API pages: from api/index.md
    assert [p.name for p in listed if p != index and p not in linked[index]] == []
    assert [p.name for p in docs if p not in seen] == []
