"""The package's import graph runs one way: no circle, and no module imports
the package's own `__init__` (read from the source, so lazy imports count)."""

import ast
from pathlib import Path

import pytest

import keras_gc

pytestmark = pytest.mark.backend_free

ROOT = Path(keras_gc.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Maps each module of keras_gc to the keras_gc modules it imports."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = graph.setdefault(name, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                # `from pkg import mod` imports the module `pkg.mod`.
                for alias in node.names:
                    child = f"{node.module}.{alias.name}"
                    edges.add(child if child in modules else node.module)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """Returns one circle of imports, or `None`."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        for child in sorted(graph[name]):
            found = visit(child, [*path, name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def test_no_module_imports_the_package_init():
    importers = sorted(name for name, edges in _graph().items() if "keras_gc" in edges)
    assert importers == [], f"{importers} import keras_gc/__init__.py"


def test_no_import_circle():
    assert _cycle(_graph()) is None


def test_the_checks_see_circles_and_upward_imports():
    graph = _graph()
    assert "keras_gc.comparison.report" in graph["keras_gc.comparison.run"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
