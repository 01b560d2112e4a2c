"""The image a universe's Dask scheduler and workers run: the project installed with everything training needs.

Two images, decided: the serving image stays the Bento's (``deploy/image.py``: only what ``bentos/`` and ``features/``
import, no Prefect, Dask, arch or yfinance), and this one carries the whole project at the pinned versions
(``constraints.txt``), so a worker can run any task the training run, the flow or universe batch scoring submits.
One image for both would make every serving replica pull and start the training stack for nothing; the two sizes are
recorded by ``benchmarks/bench_image.py`` in ``benchmarks/results/image.md``. The scheduler runs the same image, so
its Dask version is the workers' and the client's (Dask refuses mismatched versions).

The image's entrypoint is ``dask``: ``dask scheduler`` or ``dask worker tcp://SCHEDULER:8786`` (deploy/k8s/dask/).
``MLOPS_HOME`` and ``BENTOML_HOME`` point at ``/data``, where the shared volume with the snapshot and model stores
is mounted: workers read the snapshots they score and the models they load from it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from deploy.image import (
    CA_PATH,
    CA_SECRET,
    CA_VARIABLES,
    ImageBuildError,
    ImageResult,
    ImageSettings,
    backend_from,
    build_image,
    choose_base,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORKER_REPOSITORY = "mlops-finance-worker"
#: Same base as the Bento's image: python:3.11-slim where it can be pulled, else the Debian-built equivalent.
DEFAULT_BASE = "python:3.11-slim"
DATA_HOME = "/data"
USER_ID = 1034
#: Test suites inside wheels never reach a layer (pandas' alone is 42 MB); both site-packages layouts are covered.
REMOVE_TESTS = "find /usr/local/lib -type d -name tests -prune -exec rm -rf {} +"


def project_version() -> str:
    return str(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"])


def source_copy(destination: Path) -> Path:
    """The files a wheel of the project is built from, copied out of the checkout (the build writes beside them)."""
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    source = destination / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(PROJECT_ROOT / name, source / name)
    for package in packages:
        shutil.copytree(PROJECT_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return source


def build_wheel(destination: Path) -> Path:
    """A wheel of the project (its own code only; dependencies are installed from the index at the pinned versions)."""
    source = source_copy(destination)
    wheels = destination / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels)]
    result = subprocess.run([*command, str(source)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ImageBuildError(f"building the project's wheel failed: {result.stderr.strip()[-2000:]}")
    (wheel,) = wheels.glob("*.whl")
    return wheel


def render_containerfile(base_image: str, wheel_name: str, with_ca: bool) -> str:
    """The worker image's Containerfile: the wheel and constraints installed in one step, tests removed, no root."""
    mount = f"--mount=type=secret,id={CA_SECRET},target={CA_PATH} " if with_ca else ""
    ca_arguments = [f"ARG {name}={CA_PATH}" for name in CA_VARIABLES] if with_ca else []
    # The base's own pip (Debian's 23.0) cannot read the metadata of some pinned wheels (soupsieve 4.1): the image
    # gets the pip version this environment installed with.
    install = (
        f"python3 -m pip install --no-cache-dir pip=={version('pip')}"
        f" && python3 -m pip install --no-cache-dir -c /tmp/install/constraints.txt /tmp/install/{wheel_name}"
        f" && rm -rf /tmp/install && {REMOVE_TESTS}"
    )
    lines = [
        f"FROM {base_image}",
        *ca_arguments,
        f"COPY constraints.txt {wheel_name} /tmp/install/",
        f"RUN {mount}{install}",
        f"RUN useradd --uid {USER_ID} --user-group --create-home mlops && mkdir -p {DATA_HOME}"
        f" && chown {USER_ID}:{USER_ID} {DATA_HOME}",
        f"ENV MLOPS_HOME={DATA_HOME} BENTOML_HOME={DATA_HOME}/bentoml BENTOML_DO_NOT_TRACK=true",
        f"USER {USER_ID}",
        "WORKDIR /home/mlops",
        'ENTRYPOINT ["dask"]',  # no CMD: the arguments say which (`scheduler`, `worker ADDRESS`)
    ]
    return "\n".join(lines) + "\n"


def build_worker_image(settings: ImageSettings | None = None, say: Callable[[str], None] = print) -> ImageResult:
    """Build ``mlops-finance-worker:VERSION`` (and ``:latest``) on the same base as the serving image."""
    settings = settings or ImageSettings()
    if settings.ca_bundle is not None and not settings.ca_bundle.is_file():
        raise ImageBuildError(f"CA bundle {settings.ca_bundle} is not a file")
    backend = backend_from(settings)
    base_image, base_cached = choose_base(backend, DEFAULT_BASE, settings, say)
    repository = settings.repository or WORKER_REPOSITORY
    image = f"{repository}:{project_version()}"
    say(f"building {image} with {backend.name}, on {base_image}")
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    log = settings.cache_dir / "worker-image.log"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="worker-image-") as work:
        context = Path(work) / "context"
        context.mkdir()
        wheel = build_wheel(Path(work))
        shutil.copy2(wheel, context / wheel.name)
        shutil.copy2(PROJECT_ROOT / "constraints.txt", context / "constraints.txt")
        containerfile = context / "Containerfile"
        containerfile.write_text(render_containerfile(base_image, wheel.name, settings.ca_bundle is not None))
        build_image(backend, context, containerfile, [image, f"{repository}:latest"], settings, log)
    return ImageResult(
        image=image,
        bento="",
        backend=backend.name,
        base_image=base_image,
        base_cached=base_cached,
        size_bytes=backend.size_bytes(image),
        build_seconds=round(time.perf_counter() - started, 1),
    )
