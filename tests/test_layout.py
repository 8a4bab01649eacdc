"""The four packages resolve inside this repository, import only downwards, and never in a cycle.

Layers (STYLE.md): ``data`` <- ``surrogate`` <- ``train``; ``explain`` (the engine and its
``explain/evaluation/``) works on any ``nn.Module`` and imports ``data`` at most. Imports are
read from the source with ``ast``, lazy ones inside functions included.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "surrogate", "train", "explain")
# package -> top-level names it must never import (arrows point down only)
FORBIDDEN = {
    "data": {"surrogate", "train", "explain"},
    "surrogate": {"train", "explain"},
    "explain": {"train", "surrogate", "lightning"},
}
# only these folders may import the evaluation sub-package
EVALUATION_USERS = ("explain/evaluation", "train")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    """Every module of the four packages, by dotted name."""
    return {module_name(p): p for name in PACKAGES for p in sorted((REPO / name).rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """Dotted names of the absolute imports in ``path`` (``from a import b`` gives ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (a name that is not a module maps to its owner)."""
    modules = sources()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        targets = {resolve(n) for n in imported_modules(path)} - {None, name}
        # a package's own __init__ is not an edge back from its submodules' point of view
        graph[name] = {t for t in targets if not name.startswith(f"{t}.")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.mark.parametrize("name", PACKAGES)
def test_package_resolves_inside_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve() == REPO / name / "__init__.py"


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_imports_point_down(name: str) -> None:
    offending = {
        str(path.relative_to(REPO)): sorted(
            {n.split(".")[0] for n in imported_modules(path)} & FORBIDDEN[name]
        )
        for path in sorted((REPO / name).rglob("*.py"))
    }
    assert offending, f"no sources in {name}/"
    assert {k: v for k, v in offending.items() if v} == {}


def test_only_the_evaluation_and_the_application_import_the_evaluation() -> None:
    users = {
        str(path.relative_to(REPO))
        for path in sources().values()
        if any(n.startswith("explain.evaluation") for n in imported_modules(path))
    }
    assert users, "nothing imports explain.evaluation: the check would be vacuous"
    assert sorted(u for u in users if not u.startswith(EVALUATION_USERS)) == []


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 30  # the graph was read
    assert sum(map(len, graph.values())) > 50
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_init_in_tests_or_configs() -> None:
    for folder in ("tests", "configs"):
        assert list((REPO / folder).rglob("__init__.py")) == [], folder
