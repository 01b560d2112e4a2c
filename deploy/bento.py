"""Build and serve the Bento.

``bentoml build`` runs on a copy of the build context in a temporary folder: the production manifest is written into
that copy only, so the source tree never holds a manifest (it serves what the registry calls production), and the
build works from a checkout under a hidden folder (``~/.local/src/...``), which BentoML refuses to read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bentos.production import MANIFEST_NAME, write_manifest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVICE = "bentos.service:MarketModels"
#: what the Bento is built from (bentofile.yaml's ``include`` reads these)
CONTEXT_ITEMS = ("bentofile.yaml", "bentos", "features")


class BentoBuildError(RuntimeError):
    """``bentoml build`` failed; the message holds its output."""


def build(tags: dict[str, str], context: Path = PROJECT_ROOT) -> str:
    """``bentoml build`` of the Bento that serves ``tags`` (model name -> tag), from ``context``; the Bento tag."""
    with tempfile.TemporaryDirectory(prefix="mlops-bento-") as workdir:
        copy = build_context(Path(workdir) / "context", source=context)
        write_manifest(copy / "bentos" / MANIFEST_NAME, tags)
        result = subprocess.run(
            [sys.executable, "-m", "bentoml", "build", "--output", "tag", str(copy)],
            cwd=copy,
            capture_output=True,
            text=True,
            env={
                k: v for k, v in {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}.items() if k != "MLOPS_PRODUCTION_FILE"
            },
            check=False,
        )
    if result.returncode != 0:
        raise BentoBuildError(f"bentoml build failed:\n{result.stdout}\n{result.stderr}")
    tag = result.stdout.strip().splitlines()[-1].strip()
    return tag.removeprefix("__tag__:")


def build_context(destination: Path, source: Path = PROJECT_ROOT) -> Path:
    """A copy of what the Bento is built from (bentofile, ``bentos/``, ``features/``), without any manifest."""
    if any(part.startswith(".") for part in destination.resolve().parts[1:]):
        raise BentoBuildError(
            f"cannot build the Bento under {destination}: BentoML refuses build contexts inside hidden folders "
            "(a name starting with a dot); set TMPDIR to a folder without one"
        )
    destination.mkdir(parents=True, exist_ok=True)
    for item in CONTEXT_ITEMS:
        path = source / item
        if path.is_dir():
            shutil.copytree(path, destination / item, ignore=shutil.ignore_patterns("__pycache__", MANIFEST_NAME))
        else:
            shutil.copy2(path, destination / item)
    return destination


def serve_command(target: str = SERVICE, port: int = 3000, host: str = "127.0.0.1") -> list[str]:
    """The command that serves ``target`` (the source service or a Bento tag)."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--port", str(port), "--host", host]
