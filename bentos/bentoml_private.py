"""Every use of BentoML's private API (``bentoml._internal``, ``_bentoml_impl``) in the project, and why.

BentoML 1.4 has no public API for these needs; each is kept here, in one place, and
``tests/test_bentoml_private.py`` checks that every name still exists with the shape used, so a BentoML upgrade that
breaks one fails that test with the name, not a request or a build somewhere else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bentoml._internal.bento.bento import ImageInfo
    from bentoml._internal.bento.build_config import BentoEnvSchema

__all__ = ["BentoEnvSchema", "ImageInfo"]

# ------------------------------------------------------------------------------------------------ the model store
# BentoML 1.4 copies a saved model's files straight into ``models/<name>/<version>/``: a process killed in the middle
# leaves a half-written model that lists (and could be promoted) as complete. There is no public hook for where a
# save is assembled, so the store object BentoML uses (``BentoMLContainer.model_store``) is replaced by a subclass
# whose ``register`` assembles each model beside the store and renames it into place whole.

#: Where models are assembled before they are renamed into the store (beside it: the store lists every directory).
SAVING_DIR = "models-saving"


def install_atomic_model_store(process_alive: Callable[[int], bool]) -> None:
    """Make every later ``bentoml.models.create`` assemble its model beside the store and rename it in whole.

    ``process_alive(pid)`` tells whether the process that left an unfinished save still runs (else it is removed).
    """
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore
    from bentoml._internal.tag import Tag
    from bentoml.exceptions import BentoMLException

    current = BentoMLContainer.model_store.get()
    if getattr(current, "atomic_saves", False):
        return

    class AtomicModelStore(ModelStore):
        """BentoML's model store, whose saves appear in it whole or not at all."""

        atomic_saves = True

        @contextlib.contextmanager
        def register(self, tag: str | Tag) -> Iterator[str]:
            """A directory to write the model ``tag`` in; it becomes ``models/<name>/<version>`` once written."""
            tag = Tag.from_taglike(tag)
            final = self._path / tag.path()
            if final.exists():
                raise BentoMLException(f"Item '{tag}' already exists in the store {self._path}")
            staging_root = self._path.resolve().parent / SAVING_DIR  # the same filesystem, for the rename
            staging_root.mkdir(parents=True, exist_ok=True)
            for leftover in staging_root.iterdir():  # saves of processes that were killed
                pid = leftover.name.split("-", 1)[0]
                if pid.isdigit() and not process_alive(int(pid)):
                    shutil.rmtree(leftover, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{tag.name}-", dir=staging_root))
            try:
                yield str(staging)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(staging, final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            latest = self._path / tag.latest_path()
            if not latest.exists() or self.get(tag).creation_time >= self.get(tag.name).creation_time:
                temp = latest.with_name(f".latest-{os.getpid()}")
                temp.write_text(str(tag.version))
                os.replace(temp, latest)

    BentoMLContainer.model_store.set(AtomicModelStore(BentoMLContainer.model_store_dir.get()))


# ------------------------------------------------------------------------------------------------ model info
# BentoML reads every model's model.yaml (its info and our card) with yaml.safe_load, PyYAML's pure-Python loader,
# and a `bentoml serve` start reads each four times (twice in the supervisor, twice in the worker: counted by wrapping
# yaml.safe_load): ~0.15-0.3 s a tabular card and 0.8 s the card of a 500-symbol price model, against ~8x less with
# libyaml's loader, which PyYAML's wheels carry. The loader is swapped for BentoML's model module only.


class _LibyamlSafeLoad:
    """The yaml module as BentoML's model module sees it, with ``safe_load`` on libyaml's ``CSafeLoader``."""

    def __init__(self, module: Any):
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def safe_load(self, stream: Any) -> Any:
        return self._module.load(stream, Loader=self._module.CSafeLoader)


def read_model_info_with_libyaml() -> None:
    """Have BentoML read model.yaml files with libyaml's safe loader (same documents, same safe constructor), when
    PyYAML was built with it; idempotent."""
    import yaml
    from bentoml._internal.models import model

    if getattr(yaml, "__with_libyaml__", False) and model.yaml is yaml:
        model.yaml = _LibyamlSafeLoad(yaml)


# ------------------------------------------------------------------------------------------------ the monitor
# ``bentoml.monitor`` resolves the monitoring configuration by dependency injection on every call, ~50 us of the
# ~105 us a recorded answer costs (bentos/recording.py); the monitor it creates is kept in BentoML's registry of
# monitors by name. Recording finds it there and opens and closes each record on it as ``bentoml.monitor`` does.


def opened_monitor(name: str) -> Any | None:
    """The monitor ``bentoml.monitor(name)`` created in this process, or None before its first record."""
    from bentoml._internal.monitoring.api import _MONITOR_INSTANCES

    return _MONITOR_INSTANCES.get(name)


# ------------------------------------------------------------------------------------------------ the OCI image
# `bentoml containerize` (1.4.40) always apt-installs build-essential and git and takes python:3.11-slim from Docker
# Hub, with no option for either. deploy/image.py builds the same image from BentoML's own build context and
# Dockerfile template with a lean system-package step and a local base; these are the pieces it reuses.


def debian_install_commands() -> tuple[str, str]:
    """BentoML's Debian ``(install_command, default_install_command)`` templates for system packages."""
    from bentoml._internal.container.frontend.dockerfile import CONTAINER_METADATA

    debian = CONTAINER_METADATA["debian"]
    return str(debian["install_command"]), str(debian["default_install_command"])


def bento_image_info(bento_path: Path) -> tuple[ImageInfo, list[BentoEnvSchema], list[BentoEnvSchema]] | None:
    """A 1.4 Bento's image section and its (runtime, build-stage) environment variables; None for an older Bento."""
    from bentoml._internal.bento.bento import BaseBentoInfo, BentoInfoV2
    from bentoml._internal.container import split_envs_by_stage

    with open(bento_path / "bento.yaml", "rb") as stream:
        info = BaseBentoInfo.from_yaml_file(stream)
    if not isinstance(info, BentoInfoV2):
        return None
    runtime_envs, build_envs = split_envs_by_stage(info.envs)
    return info.image, runtime_envs, build_envs


def generate_dockerfile(image: ImageInfo, envs: list[BentoEnvSchema]) -> str:
    """BentoML's Dockerfile for a Bento's image section (BuildKit syntax, with its header)."""
    from _bentoml_impl.docker import generate_dockerfile as generate

    return str(generate(image, Path("."), enable_buildkit=True, add_header=True, envs=envs))


@contextlib.contextmanager
def containerfile_context(bento: Any) -> Iterator[tuple[str, str]]:
    """BentoML's build context for ``bento`` (a ``bentoml.Bento``): ``(context directory, Dockerfile path)``."""
    from bentoml._internal.container import construct_containerfile

    with construct_containerfile(bento, enable_buildkit=True) as (context, dockerfile):
        yield context, dockerfile


# ------------------------------------------------------------------------------------------------ the service's log
# BentoML 1.4 logs every exception an API method raises (``log_exception`` in ``bentoml._internal.server.http_app``,
# which ``_bentoml_impl.server.app`` calls for each failed request) on that module's logger, at ERROR with the
# traceback, 4xx answers to bad input included. No public option or hook changes it; the logger's name is the only
# handle on those records, for bentos.client_errors' filter that makes a client error one warning line.

#: the logger BentoML's HTTP app reports API exceptions on
BENTOML_APP_LOGGER = "bentoml._internal.server.http_app"
