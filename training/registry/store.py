"""The BentoML model store as this project uses it: the six model names, their cards, their stage labels.

Writes to the store survive a kill: BentoML 1.4 copies a saved model's files straight into
``models/<name>/<version>/`` and rewrites ``model.yaml`` in place, so a process killed in the middle left a
half-written model that listed (and could be promoted) as complete, or a ``model.yaml`` nothing could read.
Importing this module (every training process does) makes BentoML assemble each saved model beside the store and
rename it into place whole (``bentos.bentoml_private.install_atomic_model_store``: there is no public hook for it);
:func:`set_stage` replaces ``model.yaml`` whole.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")  # no usage analytics calls from an offline machine

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound

from bentos import production
from bentos.bentoml_private import install_atomic_model_store
from data.snapshots import process_alive
from features.catalog import MODEL_NAMES
from training.registry.card import IncompleteCardError, ModelCard

STAGE_LABEL = "stage"


class Stage:
    CANDIDATE = "candidate"
    PRODUCTION = "production"
    RETIRED = "retired"
    REJECTED = "rejected"


@dataclass(frozen=True)
class StoredModel:
    tag: str
    name: str
    version: str
    created: datetime
    labels: dict[str, str]
    metadata: dict[str, Any]

    @property
    def card(self) -> ModelCard:
        return ModelCard.from_metadata(self.metadata)

    def card_or_none(self) -> ModelCard | None:
        try:
            return self.card
        except IncompleteCardError:
            return None


bentoml_home = production.bentoml_home


def get_model(tag: str) -> StoredModel:
    """A model of the store by tag (``name:version``, ``name:latest`` or a unique version prefix)."""
    try:
        model = bentoml.models.get(tag)
    except NotFound as error:
        raise LookupError(f"no model {tag!r} in the BentoML store at {bentoml_home()}") from error
    return StoredModel(
        tag=str(model.tag),
        name=model.tag.name,
        version=str(model.tag.version),
        created=model.creation_time,
        labels=dict(model.info.labels),
        metadata=dict(model.info.metadata),
    )


def list_models(names: tuple[str, ...] = MODEL_NAMES) -> list[StoredModel]:
    """Every stored version of the project's models, newest first within each name."""
    found = []
    for name in names:
        try:
            versions = bentoml.models.list(name)
        except NotFound:
            continue
        found += [get_model(str(m.tag)) for m in versions]
    return sorted(found, key=lambda m: (MODEL_NAMES.index(m.name), -m.created.timestamp()))


def set_stage(tag: str, stage: str) -> None:
    """Relabel a stored model's stage (a view for ``bentoml models list``; the registry is the record)."""
    model = bentoml.models.get(tag)
    if model.info.labels.get(STAGE_LABEL) != stage:
        model.info.labels[STAGE_LABEL] = stage
        write_info(model)


def write_info(model: bentoml.Model) -> None:
    """Write a stored model's ``model.yaml`` (labels, metadata) whole: to a temporary file, then renamed over it."""
    fd, temp = tempfile.mkstemp(dir=model.path, prefix=".model-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf8") as handle:
            model.info.dump(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, Path(model.path) / "model.yaml")
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


install_atomic_model_store(process_alive)
