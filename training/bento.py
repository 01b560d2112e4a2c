"""Build and serve the Bento from the registry's production versions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from bentos.production import write_manifest
from bentos.settings import ServiceSettings
from training.registry import Registry

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SERVICE = "bentos.service:MarketModels"


def write_production_manifest(registry: Registry | None = None, path: Path | None = None) -> dict[str, str]:
    """Write the registry's production tags where the service reads them; return them."""
    tags = (registry or Registry()).production()
    write_manifest(path or ServiceSettings().production_file, tags)
    return tags


def build(tags: dict[str, str] | None = None, context: Path = PROJECT_ROOT) -> str:
    """``bentoml build`` of the production versions (the registry's by default) from ``context``.

    The production manifest is written into the build context, so the Bento ships the versions it serves.
    Returns the Bento tag.
    """
    write_manifest(context / "bentos" / "production.json", tags if tags is not None else Registry().production())
    result = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "--output", "tag", str(context)],
        cwd=context,
        capture_output=True,
        text=True,
        env={k: v for k, v in {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}.items() if k != "MLOPS_PRODUCTION_FILE"},
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bentoml build failed:\n{result.stdout}\n{result.stderr}")
    tag = result.stdout.strip().splitlines()[-1].strip()
    return tag.removeprefix("__tag__:")


def build_context(destination: Path) -> Path:
    """A copy of what the Bento is built from (bentofile, ``bentos/``, ``features/``), e.g. for tests."""
    for item in ("bentofile.yaml", "bentos", "features"):
        source = PROJECT_ROOT / item
        if source.is_dir():
            shutil.copytree(source, destination / item, ignore=shutil.ignore_patterns("__pycache__", "production.json"))
        else:
            shutil.copy2(source, destination / item)
    return destination


def serve_command(target: str = SERVICE, port: int = 3000, host: str = "127.0.0.1") -> list[str]:
    """The command that serves ``target`` (the source service or a Bento tag)."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--port", str(port), "--host", host]
