"""The import rules of DESIGN.md: features is numpy/pandas only; serving never sees training code or targets."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_features_imports_only_numpy_pandas_and_the_standard_library() -> None:
    allowed = {"numpy", "pandas", "features", "__future__", *sys.stdlib_module_names}
    for path, names in imports_of("features").items():
        outside = {n for n in names if n.split(".")[0] not in allowed}
        assert not outside, f"{path} imports {outside}"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("bentos", ("training", "data", "features.targets")),
        ("data", ("training", "bentos")),
        ("features", ("data", "training", "bentos")),
    ],
)
def test_forbidden_imports(package: str, forbidden: tuple[str, ...]) -> None:
    for path, names in imports_of(package).items():
        bad = {n for n in names for f in forbidden if n == f or n.startswith(f + ".")}
        assert not bad, f"{path} imports {bad}"
