"""Which version of each model is served: the one truth of "production", read by the service and batch inference.

The registry (``training.registry.promotion``) records production in ``$BENTOML_HOME/mlops/production.json``; the
source tree serves and scores exactly that. A built Bento ships a manifest of the versions promoted when it was built
(``bentos/production.json`` inside the Bento, written by ``deploy.bento.build`` into its build context only), and keeps
serving those. ``MLOPS_PRODUCTION_FILE`` names another manifest explicitly (tests, benchmarks).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from features.catalog import MODEL_NAMES

MANIFEST_NAME = "production.json"
#: the manifest a built Bento ships beside this module; never present in the source tree
SHIPPED_MANIFEST = Path(__file__).resolve().parent / MANIFEST_NAME
REGISTRY_DIR = "mlops"


class ProductionManifestError(RuntimeError):
    """The manifest is missing or does not name a version of every served model."""


def bentoml_home() -> Path:
    """BentoML's home (``BENTOML_HOME``, default ``~/bentoml``): the model store, and the registry beside it."""
    return Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml").expanduser()


def registry_root() -> Path:
    return bentoml_home() / REGISTRY_DIR


def registry_state_path(root: Path | None = None) -> Path:
    """The registry's record of production (``training.registry.promotion.Registry`` writes it)."""
    return (root or registry_root()) / MANIFEST_NAME


def production_tags(explicit: Path | None = None) -> dict[str, str]:
    """Model name -> the tag to serve: ``explicit``'s, else the shipped manifest's (a Bento), else the registry's."""
    if explicit is not None:
        return read_manifest(explicit)
    if SHIPPED_MANIFEST.is_file():
        return read_manifest(SHIPPED_MANIFEST)
    return read_registry(registry_state_path())


def bento_tags(bento: str) -> dict[str, str]:
    """The versions the built Bento ``bento`` (a tag) ships, from its manifest."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        path = Path(bentoml.get(bento).path)
    except NotFound:
        raise ProductionManifestError(f"no Bento {bento} in the local store (`bentoml list` shows them)") from None
    return read_manifest(path / "src" / "bentos" / MANIFEST_NAME)


def read_registry(path: Path) -> dict[str, str]:
    """The production tags recorded by the registry at ``path``, all six or an error naming those missing."""
    if not path.is_file():
        raise ProductionManifestError(
            f"no model is in production (no registry at {path}): train and promote them with "
            "`mlops train --promote`, or promote trained versions with `mlops promote`"
        )
    models = json.loads(path.read_text()).get("models", {})
    return _all_six({name: str(entry["tag"]) for name, entry in models.items()}, f"the registry at {path}")


def read_manifest(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ProductionManifestError(f"no production manifest at {path}")
    return _all_six(dict(json.loads(path.read_text())["models"]), str(path))


def _all_six(tags: dict[str, str], where: str) -> dict[str, str]:
    missing = [name for name in MODEL_NAMES if name not in tags]
    if missing:
        raise ProductionManifestError(
            f"{where} names no production version of {', '.join(missing)}: promote one (`mlops promote`)"
        )
    return {name: tags[name] for name in MODEL_NAMES}


def write_manifest(path: Path, tags: dict[str, str]) -> None:
    missing = [name for name in MODEL_NAMES if name not in tags]
    if missing:
        raise ProductionManifestError(f"no production version of {', '.join(missing)}: promote them first")
    payload = {"models": {name: tags[name] for name in MODEL_NAMES}}
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".production-", suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(temp, path)
