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
    assert "noisesearch.drivers.calibrate" in imports(PACKAGE / "cli.py")  # imported inside cmd_calibrate


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


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (`from a import b` names module a.b where
    there is one, else a)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                             for a in node.names)
        graph[name] = {owner(m) for m in found if m.split(".")[0] == "noisesearch"} - {None, name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# The package's layers, lowest first: a module imports modules of its own package or of a lower layer only.
LAYERS = [
    ["errors", "version"],
    ["files", "checks"],
    ["naming", "seeds", "flow", "imaging", "plotting", "progress", "types", "environment", "executors", "assets",
     "batching", "verifier_protocol", "precision"],
    ["rng", "sampling", "models"],
    ["metrics"],
    ["cost", "denoiser", "rewards", "outputs"],
    ["problem", "backends"],
    ["search"],
    ["adaptive"],
    ["api", "testing"],
    ["drivers", "serving"],
    ["experiments"],
    ["explore", "demo"],
    ["cli", "__init__"],
]
LAYER = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str:
    """The top-level module or subpackage a module belongs to ("__init__" for the package itself)."""
    return module.split(".")[1] if "." in module else "__init__"


def test_the_import_graph_sees_what_it_must():
    graph = module_graph()
    assert "noisesearch.cost" in graph["noisesearch.search.local"]  # from noisesearch import cost
    assert "noisesearch.drivers" in graph["noisesearch.cli"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_in_a_cycle():
    assert cycles(module_graph()) == []


def test_every_module_imports_its_own_package_or_a_lower_layer_only():
    graph = module_graph()
    assert {part_of(m) for m in graph} == set(LAYER)  # a new package or module must be given a layer
    upward = [f"{m} imports {other}" for m, imported in sorted(graph.items()) for other in sorted(imported)
              if part_of(other) != part_of(m) and LAYER[part_of(other)] >= LAYER[part_of(m)]]
    assert upward == []
