"""The package's layers, read from its import statements with ast (inside functions too)."""

import ast
from pathlib import Path

import noisesearch

PACKAGE = Path(noisesearch.__file__).parent


def imports(path: Path) -> set[str]:
    """Every module name, and every `module.name` of a from-import, that a file imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_imports(folder: str) -> dict[str, set[str]]:
    return {str(p.relative_to(PACKAGE)): imports(p) for p in sorted((PACKAGE / folder).rglob("*.py"))}


def offenders(modules: dict[str, set[str]], forbidden: str) -> list[str]:
    return [f"{name} imports {m}" for name, found in modules.items() for m in sorted(found)
            if m == forbidden or m.startswith(forbidden + ".")]


def test_imports_sees_function_level_imports():
    assert "noisesearch.adaptive.calibrate" in imports(PACKAGE / "cli.py")  # imported inside cmd_calibrate


def test_search_never_imports_adaptive():
    modules = package_imports("search")
    assert "search/local.py" in modules
    assert offenders(modules, "noisesearch.adaptive") == []


def test_rewards_never_import_backends():
    modules = package_imports("rewards")
    assert "rewards/classifier.py" in modules
    assert offenders(modules, "noisesearch.backends") == []


def test_problem_receives_its_sampler_and_imports_no_sampler_class():
    sampling = {m for m in imports(PACKAGE / "problem.py") if m.startswith("noisesearch.sampling")}
    assert sampling == {"noisesearch.sampling", "noisesearch.sampling.Sampler"}  # the protocol, for type hints


def test_sampling_and_cost_sit_below_problem_search_and_backends():
    below = {**package_imports("sampling"), "cost.py": imports(PACKAGE / "cost.py")}
    for upper in ("noisesearch.problem", "noisesearch.search", "noisesearch.backends", "noisesearch.adaptive",
                  "noisesearch.api"):
        assert offenders(below, upper) == []


def module_file(name: str) -> str | None:
    """The file (relative to the package) of a module name, if it is one of the package's modules."""
    parts = name.split(".")
    if parts[0] != "noisesearch":
        return None
    for candidate in (PACKAGE.joinpath(*parts[1:]).with_suffix(".py"), PACKAGE.joinpath(*parts[1:], "__init__.py")):
        if len(parts) > 1 and candidate.is_file():
            return str(candidate.relative_to(PACKAGE))
    return None


def test_experiments_and_their_report_sections_import_in_no_cycle():
    # edges are the import statements (a submodule's implicit import of its package's __init__ does not count)
    modules = package_imports("experiments")
    assert "experiments/sections/__init__.py" in modules and "experiments/document.py" in modules
    graph = {name: {f for m in found if (f := module_file(m)) in modules and f != name}
             for name, found in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        assert name not in path, f"import cycle: {' -> '.join(path[path.index(name):] + [name])}"
        if name not in done:
            for nxt in sorted(graph[name]):
                visit(nxt, [*path, name])
            done.add(name)

    for name in sorted(graph):
        visit(name, [])
