"""A benchmark's own temporary stores, set before anything of the project is imported: never the user's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def bench_home(keep: str, prefix: str) -> Path:
    """The benchmark's work folder (the one ``keep`` names, reused, else a new temporary one), with BentoML's store,
    ``MLOPS_HOME`` and the production manifest (``<work>/production.json``) inside it."""
    named = os.environ.get(keep)
    work = Path(named) if named else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(work / "bentoml")
    os.environ["MLOPS_HOME"] = str(work / "home")
    os.environ["MLOPS_PRODUCTION_FILE"] = str(work / "production.json")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    return work


def current_models(manifest: Path) -> dict[str, str] | None:
    """The tags ``manifest`` names when every one is a model of the current feature code and card version (a
    benchmark reuses them), else None (retrain: the stored models predate the code)."""
    if not manifest.is_file():
        return None
    import json

    import bentoml

    from features import DEFAULT_SPEC
    from training.registry.card import CARD_VERSION

    tags = dict(json.loads(manifest.read_text())["models"])
    cards = [bentoml.models.get(tag).info.metadata for tag in tags.values()]
    current = (DEFAULT_SPEC.version_hash, CARD_VERSION)
    return tags if all((c.get("feature_spec_hash"), c.get("card_version")) == current for c in cards) else None
