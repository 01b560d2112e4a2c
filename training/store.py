"""The BentoML model store as this project uses it: the six model names, their cards, their stage labels."""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")  # no usage analytics calls from an offline machine

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import bentoml
from bentoml.exceptions import NotFound

from training.card import IncompleteCardError, ModelCard

MODEL_NAMES: tuple[str, ...] = (
    "return_lightgbm",
    "return_random_forest",
    "direction_lightgbm",
    "volatility_lightgbm",
    "price_prophet",
    "regime_hmm",
)
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


def bentoml_home() -> Path:
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))


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
        model.flush()
