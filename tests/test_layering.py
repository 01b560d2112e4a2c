"""The layout's import rules (README, "Layout"): each room imports only the rooms below it; no import circles.

Every import counts, wherever it is written (module level, inside a function, under ``TYPE_CHECKING``), and
``from package import module`` is resolved to the module it names.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "cluster", "data", "bentos", "deploy", "training", "scoring", "monitoring", "cli")

#: room -> the project rooms it may import (its own room always). The most specific room of a module wins.
ALLOWED: dict[str, set[str]] = {
    "features": set(),
    "cluster": set(),
    "data": {"features"},
    "bentos": {"features"},
    "deploy": {"bentos", "features"},
    "training": set(),
    "training.config": set(),
    "training.dataset": {"cluster", "data", "features", "training.config"},
    "training.evaluation": {"data", "features", "training.config", "training.dataset"},
    "training.registry": {"features", "data", "bentos"},
    "training.models": {
        "cluster",
        "features",
        "bentos",
        "training.config",
        "training.dataset",
        "training.evaluation",
        "training.registry",
    },
    "training.run": {
        "cluster",
        "data",
        "features",
        "training.config",
        "training.dataset",
        "training.evaluation",
        "training.registry",
        "training.models",
    },
    "scoring": {"cluster", "data", "features", "bentos"},
    "training.flows": {"cluster", "data", "features", "bentos", "deploy", "training", "monitoring"},
    "monitoring": {"bentos", "data", "features", "training"},
    "cli": {"cluster", "data", "features", "bentos", "deploy", "training", "scoring", "monitoring"},
}
#: what features may import from outside the project: the contract is numpy and pandas, and its trading calendar.
FEATURES_THIRD_PARTY = {"numpy", "pandas", "exchange_calendars"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


MODULES = project_modules()


def imported_names(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, ``from package import module`` resolved to the module."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    yield from names_in(path.read_text(), package)


def names_in(source: str, package: str) -> Iterator[str]:
    """The modules ``source`` (a module of ``package``) imports."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}"


def project_imports(module: str) -> set[str]:
    """The project modules ``module`` imports (a package import counts as its ``__init__``)."""
    return {name for name in imported_names(MODULES[module]) if name in MODULES and name != module}


def room(module: str) -> str:
    """The most specific room of ALLOWED that holds ``module``."""
    candidates = [r for r in ALLOWED if module == r or module.startswith(r + ".")]
    assert candidates, f"{module} is in no room of the layout: add it to ALLOWED and to the README's table"
    return max(candidates, key=len)


def in_room(module: str, rooms: set[str]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in rooms)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down_the_layout(module: str) -> None:
    own = room(module)
    allowed = ALLOWED[own] | {own}
    bad = {name for name in project_imports(module) if not in_room(name, allowed)}
    assert not bad, f"{module} (room {own}) imports {sorted(bad)}; it may import {sorted(allowed)}"


def test_nothing_imports_the_cli() -> None:
    importers = {m for m in MODULES if not m.startswith("cli") for name in project_imports(m) if name.startswith("cli")}
    assert not importers, f"{sorted(importers)} import the CLI, which sits above everything"


def test_no_import_circles() -> None:
    graph = {module: project_imports(module) for module in MODULES}
    # package __init__ imports of submodules are how packages re-export; a cycle through them is still a cycle
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_features_imports_only_numpy_pandas_and_the_standard_library() -> None:
    allowed = {*FEATURES_THIRD_PARTY, "features", "__future__", *sys.stdlib_module_names}
    for module, path in MODULES.items():
        if module.startswith("features"):
            outside = {n for n in imported_names(path) if n.split(".")[0] not in allowed}
            assert not outside, f"{module} imports {outside}"


def test_serving_never_sees_training_targets() -> None:
    for module in MODULES:
        if module.startswith("bentos"):
            assert "features.targets" not in project_imports(module), f"{module} imports the training targets"


def test_the_checker_resolves_from_package_import_module() -> None:
    """``from training.registry import store`` and ``from . import store`` name the module, not only the package."""
    assert "training.registry.store" in set(names_in("from training.registry import store\n", "cli"))
    assert "training.registry.store" in set(names_in("from . import store\n", "training.registry"))
    assert "training.registry.card" in set(names_in("from .card import ModelCard\n", "training.registry"))


LONG_FILE_LINES = 400


def test_no_file_is_long_without_a_reason() -> None:
    """A module over ~400 lines is usually two: it says in its docstring why it is one ("... lines because ...")."""
    long = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        if path.relative_to(ROOT).parts[0] not in (*PACKAGES, "tests", "benchmarks"):
            continue
        text = path.read_text()
        lines = text.count("\n")
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if lines > LONG_FILE_LINES and "lines because" not in docstring:
            long.append(f"{path.relative_to(ROOT)} ({lines} lines)")
    assert not long, f"split these, or say in the docstring why each is one file ('... lines because ...'): {long}"
