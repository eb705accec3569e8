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


def test_backends_modules_import_no_cycle():
    """backends/ is a layered stack: e.g. the diffusers family table sits above both the UNet and the flow
    denoisers, which never import each other upward."""
    files = package_imports("backends")
    names = {path: "noisesearch." + path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
             for path in files}
    modules = set(names.values())

    def module_of(imported: str) -> str | None:
        while imported and imported not in modules:
            imported = imported.rpartition(".")[0]
        return imported or None

    graph = {names[path]: {module_of(m) for m in found} - {None, names[path]} for path, found in files.items()}
    assert "noisesearch.backends.diffusers_flow" in graph["noisesearch.backends.diffusers_families"]
    done, path = set(), []

    def visit(module: str) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path[path.index(module):], module])}"
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
