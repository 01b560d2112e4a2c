"""One source of truth for what the project depends on.

``pyproject.toml`` declares every distribution the code imports (the project's packages: its dependencies; tests
and benchmarks: those and the ``dev`` extra), ``constraints.txt`` pins each within its declared range, and the
Bento (``bentofile.yaml``'s ``python.packages``) pins what its code (``bentos/``, ``features/``) imports, at the
constraints' versions. Nothing comes in by accident as another package's dependency.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("data", "features", "cluster", "bentos", "training", "deploy", "scoring", "cli")
#: what bentofile.yaml's ``include`` ships
BENTO_PACKAGES = ("bentos", "features")
DEVELOPMENT = ("tests", "benchmarks")


def normalised(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def pyproject() -> dict:  # type: ignore[type-arg]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared(*extras: str) -> dict[str, Requirement]:
    project = pyproject()["project"]
    specs = [*project["dependencies"], *(s for extra in extras for s in project["optional-dependencies"][extra])]
    return {normalised(r.name): r for r in map(Requirement, specs)}


@cache
def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalised(name)] = version.strip()
    return pins


def bento_packages() -> list[str]:
    return list(yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"])


def third_party_imports(roots: Iterable[str]) -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for every absolute import outside the standard library and the
    project (wherever it is written: module level, in a function, under ``TYPE_CHECKING``)."""
    local = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    found: dict[str, set[str]] = {}
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.partition(".")[0]
                    if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def undeclared(roots: Iterable[str], allowed: set[str]) -> list[str]:
    """The imports of ``roots`` whose distribution is not in ``allowed``, each with its files and distributions."""
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module, files in sorted(third_party_imports(roots).items()):
        providers = {normalised(d) for d in distributions.get(module, [])}
        if not providers & allowed:
            where = ", ".join(sorted(files)[:3]) + (" ..." if len(files) > 3 else "")
            missing.append(f"{module} (from {', '.join(sorted(providers)) or 'no installed distribution'}): {where}")
    return missing


def test_the_project_declares_every_distribution_it_imports() -> None:
    missing = undeclared(PROJECT_PACKAGES, set(declared()))
    assert not missing, "imported but not in pyproject's dependencies:\n" + "\n".join(missing)


def test_tests_and_benchmarks_declare_every_distribution_they_import() -> None:
    missing = undeclared(DEVELOPMENT, set(declared("dev")))
    assert not missing, "imported but not in pyproject's dependencies or dev extra:\n" + "\n".join(missing)


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = constraints()
    wrong = [
        f"{name}: {requirement.specifier} declared, " + (f"{pins[name]} pinned" if name in pins else "not pinned")
        for name, requirement in declared("dev").items()
        if name not in pins or not requirement.specifier.contains(pins[name], prereleases=True)
    ]
    assert not wrong, "pyproject.toml and constraints.txt disagree:\n" + "\n".join(wrong)


@pytest.mark.parametrize("spec", bento_packages())
def test_every_bento_pin_is_the_constraints_pin(spec: str) -> None:
    name, equals, version = spec.partition("==")
    assert equals and version.strip(), f"bentofile.yaml: {spec!r} is not pinned as name==version"
    pinned = constraints().get(normalised(name.strip()))
    assert pinned == version.strip(), f"bentofile.yaml pins {spec}, constraints.txt {pinned or 'nothing'}"


def test_the_bento_pins_every_distribution_its_code_imports() -> None:
    pinned = {normalised(spec.partition("==")[0].strip()) for spec in bento_packages()}
    missing = undeclared(BENTO_PACKAGES, pinned)
    assert not missing, "the Bento's code imports what bentofile.yaml does not install:\n" + "\n".join(missing)
