"""The import graph, read from the source (imports inside functions count; imports only for type
checkers do not): no cycle between top-level packages, none between modules, the product
never imports its stand-ins (`lab/`) or its tests, and the converge engine is a library that
imports nothing of photostack but itself."""

from __future__ import annotations

import ast
from collections import defaultdict
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("app", "infra", "monitoring", "ops", "roles")
STAND_INS = ("lab", "tests")

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node, except what sits under `if TYPE_CHECKING:` (no import at run time)."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
            yield from (n for branch in child.orelse for n in [branch, *_runtime_nodes(branch)])
            continue
        yield child
        yield from _runtime_nodes(child)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports at run time (`from package import name` counts the
    module `name` when there is one, else the package)."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
                break
    return found


def graph(packages: tuple[str, ...]) -> Graph:
    files = {module_name(p): p for package in packages for p in (ROOT / package).rglob("*.py")
             if "migrations" not in p.parts}
    return {name: imported(path, set(files)) - {name} for name, path in files.items()}


def top(module: str) -> str:
    return module.split(".")[0]


def cycle(edges: Graph) -> list[str]:
    """One import cycle of the graph ([] when there is none)."""
    try:
        TopologicalSorter(edges).prepare()
    except CycleError as exc:
        return exc.args[1]
    return []


@pytest.fixture(scope="module")
def modules() -> Graph:
    return graph(PRODUCT + ("lab",))


def test_no_cycle_between_top_level_packages(modules: Graph) -> None:
    packages: Graph = defaultdict(set)
    for source, targets in modules.items():
        packages[top(source)] |= {top(t) for t in targets} - {top(source)}
    assert cycle(packages) == []


def test_no_cycle_between_modules(modules: Graph) -> None:
    # A package's __init__ importing its own modules is not a cycle of design.
    between = {source: {t for t in targets if not t.startswith(source + ".")} for source, targets in modules.items()}
    assert cycle(between) == []


def test_the_product_imports_no_stand_in(modules: Graph) -> None:
    leaks = sorted((source, target) for source, targets in modules.items() for target in targets
                   if top(source) in PRODUCT and top(target) in STAND_INS)
    assert leaks == []


def test_the_engine_imports_only_itself(modules: Graph) -> None:
    engine = [m for m in modules if m == "roles.engine" or m.startswith("roles.engine.")]
    assert engine  # the check reads the engine's files
    outside = sorted((source, target) for source in engine for target in modules[source]
                     if not (target == "roles.engine" or target.startswith("roles.engine.")))
    assert outside == []
