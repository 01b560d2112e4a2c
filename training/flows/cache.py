"""The retrain flow's training cache: a rerun on an unchanged snapshot trains nothing.

Every model the flow trains is labelled in the BentoML store with its training key: the snapshot id, a hash of the
code that fits it and a hash of the training config. A later run with the same key reuses the stored model. The code
hashed is the trainer modules and every project module they import (``features/``, ``data/``, ``training/`` and the
serving-side model formats of ``bentos/``), at any depth, plus
the libraries' versions: orchestration (the flow, the gate, the smoke test, the image build) is not imported by a
trainer, so editing it does not make the store's models look stale. The store's labels, not Prefect's result
cache, hold the key, so it survives the temporary Prefect API and a new ``PREFECT_HOME``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from features.catalog import MODELS
from training.config import TrainingConfig
from training.registry.card import library_versions
from training.registry.store import get_model, list_models, write_info

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: every project package a trainer may import: a serving-side model format in ``bentos/`` shapes what is saved too
PROJECT_PACKAGES = ("features", "data", "bentos", "training")
REPORT_LABEL = "report"


@dataclass(frozen=True)
class TrainingKey:
    """What a trained model depends on: the snapshot, the code that trains it and the training config."""

    snapshot: str
    code_version: str
    config: str

    def labels(self) -> dict[str, str]:
        return {"snapshot": self.snapshot, "code_version": self.code_version, "training_config": self.config}


def _source(module: str) -> Path | None:
    """The file of a project module (``features`` -> ``features/__init__.py``), or None if it is not one."""
    parts = module.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return None
    base = PROJECT_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path) -> set[str]:
    """Every module an import statement of ``path`` may name, lazy imports inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # ``from pkg import module``
    return names


@functools.cache
def training_modules() -> tuple[str, ...]:
    """The project files a trained model depends on (relative paths, sorted): the trainers, ``training/run.py``
    and every project module they import, at any depth."""
    pending = ["training.run", *(kind.trainer_module for kind in MODELS)]
    found: dict[str, Path] = {}
    while pending:
        module = pending.pop()
        path = _source(module)
        if path is None or module in found:
            continue
        found[module] = path
        packages = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        pending += packages + sorted(_imported(path))
    return tuple(sorted({str(p.relative_to(PROJECT_ROOT)) for p in found.values()}))


@functools.cache
def code_version() -> str:
    """A hash of :func:`training_modules` and the library versions this process runs."""
    digest = hashlib.sha256()
    for relative in training_modules():
        digest.update(f"{relative}\0".encode())
        digest.update((PROJECT_ROOT / relative).read_bytes())
    for library, version in sorted(library_versions().items()):
        digest.update(f"{library}={version}\0".encode())
    return digest.hexdigest()[:16]


def training_key(snapshot_id: str, config: TrainingConfig) -> TrainingKey:
    config_hash = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return TrainingKey(snapshot_id, code_version(), config_hash)


def find_trained(name: str, key: TrainingKey) -> str | None:
    """The newest stored ``name`` trained under ``key`` with a complete card, if any."""
    wanted = key.labels()
    for stored in list_models((name,)):
        if all(stored.labels.get(k) == v for k, v in wanted.items()) and stored.card_or_none() is not None:
            return stored.tag
    return None


def label(tag: str, labels: dict[str, str]) -> None:
    """Add ``labels`` to a stored model (its ``model.yaml`` replaced whole, as every relabelling is)."""
    import bentoml

    model = bentoml.models.get(tag)
    model.info.labels.update(labels)
    write_info(model)


def record_training_key(tag: str, key: TrainingKey) -> None:
    """Label a stored model with the key it was trained under (what :func:`find_trained` looks for)."""
    label(tag, key.labels())


def record_report(tags: list[str], report: str) -> None:
    """Label the models a run trained with the path of its training report, for the runs that reuse them."""
    for tag in tags:
        label(tag, {REPORT_LABEL: report})


def report_of(tag: str) -> str | None:
    """The training report of the run that trained ``tag``, if it recorded one."""
    try:
        return get_model(tag).labels.get(REPORT_LABEL)
    except LookupError:
        return None
