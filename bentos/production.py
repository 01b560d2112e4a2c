"""The production manifest: which version of each model this service serves.

Written from the registry when a Bento is built (``mlops build``) and shipped inside it, so a Bento
always serves exactly the versions that were promoted when it was built.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

SERVED_MODELS: tuple[str, ...] = (
    "return_lightgbm",
    "return_random_forest",
    "direction_lightgbm",
    "volatility_lightgbm",
    "price_prophet",
    "regime_hmm",
)


class ProductionManifestError(RuntimeError):
    """The manifest is missing or does not name a version of every served model."""


def read_manifest(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ProductionManifestError(
            f"no production manifest at {path}: promote models (`mlops train --promote` or `mlops promote`), "
            "then write it with `mlops build` (or `mlops serve`)"
        )
    tags = dict(json.loads(path.read_text())["models"])
    missing = [name for name in SERVED_MODELS if name not in tags]
    if missing:
        raise ProductionManifestError(f"{path} names no production version of {', '.join(missing)}")
    return {name: tags[name] for name in SERVED_MODELS}


def write_manifest(path: Path, tags: dict[str, str]) -> None:
    missing = [name for name in SERVED_MODELS if name not in tags]
    if missing:
        raise ProductionManifestError(f"no production version of {', '.join(missing)}: promote them first")
    payload = {"models": {name: tags[name] for name in SERVED_MODELS}}
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".production-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(temp, path)
