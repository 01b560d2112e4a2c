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
