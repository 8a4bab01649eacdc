"""The four packages resolve inside this repository and import only downwards."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("data", "surrogate", "train", "explain")
# package -> our packages it must never import (STYLE.md: arrows point down only)
FORBIDDEN = {
    "data": {"surrogate", "train", "explain"},
    "surrogate": {"train", "explain"},
    "explain": {"train"},
}


def imported_packages(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path``, lazy ones inside functions too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("name", PACKAGES)
def test_package_resolves_inside_repository(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve() == REPO / name / "__init__.py"


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_imports_point_down(name: str) -> None:
    sources = sorted((REPO / name).rglob("*.py"))
    assert sources, f"no sources in {name}/"
    offending = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) & FORBIDDEN[name])
        for path in sources
    }
    assert {k: v for k, v in offending.items() if v} == {}


def test_no_init_in_tests_or_configs() -> None:
    for folder in ("tests", "configs"):
        assert list((REPO / folder).rglob("__init__.py")) == [], folder
