"""The Bento as a deployable OCI image, built and smoke-tested with or without a Docker engine.

`containerize` follows `bentoml containerize`: BentoML's build context (the Bento and its models) and its Dockerfile
template, rendered with two changes. The base image is `python:3.11-slim` where it can be pulled, otherwise an
equivalent built from the machine's own Debian mirror (deploy/base_image.py). And the system-package step installs
only what the Bento asks for (`docker.system_packages` in bentofile.yaml), not BentoML's default compilers and git.
`smoke_test_image` starts the image's entrypoint (`docker run`, `podman run`, or `buildah run` on the host network),
waits for /readyz and calls every method with a real request.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deploy.base_image import host_recipe
from deploy.oci import Backend, apt_install, ensure_backend

if TYPE_CHECKING:
    from bentos.bentoml_private import BentoEnvSchema, ImageInfo

CA_SECRET = "mlops_ca"
CA_PATH = f"/run/secrets/{CA_SECRET}"
CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")
SERVICE_PORT = 3000
PIP_INSTALL = "pip install -r $BENTO_PATH/env/python/requirements.txt"
REMOVE_TESTS = "find /app/.venv/lib -type d -name tests -prune -exec rm -rf {} +"
DEFAULT_IMAGE_BYTES = 1_510_000_000  # BentoML's default image of this Bento (python:3.11-slim + build-essential, git)


def _cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-finance"


class ImageSettings(BaseSettings):
    """How images are built and run (environment prefix ``MLOPS_IMAGE_``)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_IMAGE_", extra="ignore")

    backend: Literal["auto", "docker", "podman", "buildah"] = Field(
        "auto", description="Image tool; auto: Docker if an engine answers, else podman, else buildah."
    )
    base: Literal["auto", "registry", "debian"] = Field(
        "auto",
        description="Base image: the Bento's (python:3.11-slim) from its registry, one built from the machine's "
        "Debian mirror, or auto: the registry's if it can be pulled, else the Debian one.",
    )
    debian_suite: str = Field("bookworm", description="Debian release of the built base (bookworm's python3 is 3.11).")
    debian_mirror: str = Field("", description="Debian mirror URL; default: the one apt uses on this machine.")
    refresh_base: bool = Field(False, description="Rebuild the Debian base even if cached (to pick up updates).")
    ca_bundle: Path | None = Field(
        None,
        description="CA bundle for build steps behind a TLS-intercepting proxy: mounted as a build secret and "
        "named by SSL_CERT_FILE/PIP_CERT during the build, never stored in the image. Off by default.",
    )
    storage_driver: str = Field("", description="podman/buildah storage driver (e.g. vfs); default: theirs.")
    isolation: str = Field("chroot", description="podman/buildah isolation of build steps and of `buildah run`.")
    install_tools: bool = Field(
        False, description="Install buildah and debootstrap with apt-get (root) when no image tool is usable."
    )
    layers: bool = Field(True, description="Cache build layers (a new Bento with the same packages reuses them).")
    pull_timeout: float = Field(60.0, gt=0, description="Seconds to wait for a base image pull.")
    repository: str = Field(
        "", description="Image name; default: the Bento's name. Tagged with the Bento's version and `latest`."
    )
    cache_dir: Path = Field(default_factory=_cache_home, description="Lock and logs of base and image builds.")
    ready_timeout: float = Field(300.0, gt=0, description="Seconds for a started image to answer /readyz.")


class ImageResult(BaseModel):
    """A built image: where it is, what made it, how big, how long it took."""

    image: str
    bento: str
    backend: str
    base_image: str
    base_cached: bool
    size_bytes: int
    build_seconds: float


class ImageBuildError(RuntimeError):
    """The image could not be built or did not answer as it should."""


def backend_from(settings: ImageSettings) -> Backend:
    return ensure_backend(settings.backend, settings.storage_driver, settings.isolation, settings.install_tools)


def choose_base(
    backend: Backend, default_base: str, settings: ImageSettings, say: Callable[[str], None]
) -> tuple[str, bool]:
    """The base image to build on, present in ``backend``'s storage; and whether it was there already."""
    if settings.base != "debian":
        if backend.image_exists(default_base):
            return default_base, True
        failure = backend.pull(default_base, settings.pull_timeout)
        if not failure:
            return default_base, False
        if settings.base == "registry":
            raise ImageBuildError(f"cannot pull the base image {default_base}: {failure}")
        say(f"cannot pull {default_base} ({failure}): using a Python 3.11 base built from the Debian mirror")
    from deploy.base_image import ensure_base_image

    if settings.install_tools and shutil.which("debootstrap") is None:
        apt_install(("debootstrap",), "building the Debian base image needs debootstrap")
    recipe = host_recipe(settings.debian_suite, settings.debian_mirror)
    return ensure_base_image(backend, recipe, settings.cache_dir, settings.refresh_base, say)


def lean_commands(commands: list[str]) -> list[str]:
    """The Bento's image commands without BentoML's default compilers and git: one apt step, lists removed."""
    from bentos.bentoml_private import debian_install_commands

    install_command, default_install_command = debian_install_commands()
    install_prefix = install_command.split("{packages}")[0]
    packages: list[str] = []
    others: list[str] = []
    for command in commands:
        if command == default_install_command:
            continue
        if command.startswith(install_prefix):
            packages += shlex.split(command.removeprefix(install_prefix))
        else:
            others.append(command)
    if not packages:
        return others
    install = " ".join(shlex.quote(p) for p in packages)
    apt = (
        f"apt-get update -q && apt-get install -q -y --no-install-recommends {install}"
        " && apt-get clean && rm -rf /var/lib/apt/lists/*"
    )
    return [apt, *others]


def bento_image(bento_path: Path) -> tuple[ImageInfo, list[BentoEnvSchema]]:
    """The image section and runtime environment variables of the Bento at ``bento_path`` (BentoML 1.4, spec 2)."""
    from bentos.bentoml_private import bento_image_info

    found = bento_image_info(bento_path)
    if found is None:
        raise ImageBuildError(f"{bento_path} is not a BentoML 1.4 Bento (spec 2): rebuild it with `mlops build`")
    image, runtime_envs, build_envs = found
    if build_envs:
        raise ImageBuildError(f"build-stage environment variables are not supported: {[e.name for e in build_envs]}")
    return image, runtime_envs


def render_containerfile(
    image: ImageInfo, base_image: str, with_ca: bool, envs: list[BentoEnvSchema] | None = None
) -> str:
    """BentoML's Dockerfile for a Bento's ``image`` section, on ``base_image``, with the lean system-package step.

    With ``with_ca``, every build step mounts the CA bundle secret and SSL_CERT_FILE/PIP_CERT name it (build
    arguments, so they are not in the image's environment).
    """
    import attrs

    from bentos.bentoml_private import generate_dockerfile

    image = attrs.evolve(image, base_image=base_image, commands=lean_commands(list(image.commands)))
    # BuildKit syntax (cache and secret mounts) is read by docker, podman and buildah alike; the `# syntax` line
    # would make BuildKit fetch a frontend image from Docker Hub, so it goes.
    text = generate_dockerfile(image, envs or [])
    lines = [line for line in text.splitlines() if not line.startswith("# syntax")]
    install = [i for i, line in enumerate(lines) if line.rstrip().endswith(PIP_INSTALL)]
    if len(install) != 1:
        raise ImageBuildError(f"BentoML's Dockerfile has {len(install)} lines ending in {PIP_INSTALL!r}, expected 1")
    # Test suites shipped inside wheels (pandas alone: 42 MB) go in the same step, so they never reach a layer.
    lines[install[0]] += f" && {REMOVE_TESTS}"
    if with_ca:
        mount = f"--mount=type=secret,id={CA_SECRET},target={CA_PATH}"
        lines = [f"RUN {mount} {line[4:]}" if line.startswith("RUN ") else line for line in lines]
        first_from = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
        lines[first_from + 1 : first_from + 1] = [f"ARG {name}={CA_PATH}" for name in CA_VARIABLES]
    return "\n".join(lines) + "\n"


def build_image(
    backend: Backend, context: Path, containerfile: Path, tags: list[str], settings: ImageSettings, log: Path
) -> None:
    """Build ``containerfile`` in ``context`` as ``tags``, the CA bundle mounted as a secret, logging to ``log``."""
    secrets = {CA_SECRET: settings.ca_bundle.resolve()} if settings.ca_bundle else {}
    command = backend.build_command(context, containerfile, tags, secrets, settings.layers)
    with open(log, "wb") as out:
        result = subprocess.run(command, cwd=context, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise ImageBuildError(
            f"{backend.name} build of {tags[0]} failed (exit {result.returncode}); log {log}:\n{tail}"
        )


def containerize(
    bento_tag: str, settings: ImageSettings | None = None, say: Callable[[str], None] = print
) -> ImageResult:
    """Build the OCI image of a Bento (on a cached base where possible); raise :class:`ImageBuildError`."""
    import bentoml

    from bentos.bentoml_private import containerfile_context

    settings = settings or ImageSettings()
    if settings.ca_bundle is not None and not settings.ca_bundle.is_file():
        raise ImageBuildError(f"CA bundle {settings.ca_bundle} is not a file")
    backend = backend_from(settings)
    bento = bentoml.get(bento_tag)
    image_info, envs = bento_image(Path(bento.path))
    base_image, base_cached = choose_base(backend, image_info.base_image, settings, say)
    repository = (settings.repository or bento.tag.name).lower()
    image = f"{repository}:{bento.tag.version}"
    say(f"building {image} from Bento {bento.tag} with {backend.name}, on {base_image}")
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    log = settings.cache_dir / f"image-{bento.tag.version}.log"
    started = time.perf_counter()
    with containerfile_context(bento) as (context, dockerfile):
        Path(dockerfile).write_text(render_containerfile(image_info, base_image, settings.ca_bundle is not None, envs))
        build_image(backend, Path(context), Path(dockerfile), [image, f"{repository}:latest"], settings, log)
    return ImageResult(
        image=image,
        bento=str(bento.tag),
        backend=backend.name,
        base_image=base_image,
        base_cached=base_cached,
        size_bytes=backend.size_bytes(image),
        build_seconds=round(time.perf_counter() - started, 1),
    )


def bento_production(bento_tag: str) -> dict[str, str]:
    """The model versions a built Bento ships (its production manifest)."""
    from bentos.production import bento_tags

    return bento_tags(bento_tag)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc), including those that started their own session."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        below = children.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _stop_tree(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the process and everything below it (BentoML's workers run in sessions of their own), then SIGKILL."""
    pids = [process.pid, *descendants(process.pid)]
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_running(pid) for pid in pids):
            process.poll()  # reaps the direct child; init reaps the others
            time.sleep(0.2)
        if not any(_running(pid) for pid in pids):
            break
    process.wait()


@contextmanager
def run_container(
    backend: Backend, image: str, arguments: list[str], log: Path, publish: tuple[int, int] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``image``'s entrypoint followed by ``arguments`` in the background; stop it and remove it on exit.

    buildah runs it in a chroot on the host's network (``publish``, a (host, container) port pair, is then moot: the
    process binds the host's port itself); docker and podman publish the port on 127.0.0.1, or without one run on the
    host's network (a Dask worker reaching a scheduler on the host).
    """
    name = f"mlops-run-{uuid.uuid4().hex[:8]}"
    if backend.name == "buildah":
        backend.call("from", "--name", name, image).check_returncode()
        command = backend.command("run", "--isolation", backend.isolation, name, "--", *backend.entrypoint(image))
        command += arguments
    else:
        network = ["-p", f"127.0.0.1:{publish[0]}:{publish[1]}"] if publish else ["--network", "host"]
        command = backend.command("run", "--rm", "--name", name, *network, image, *arguments)
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        if backend.name != "buildah":
            backend.call("stop", "--time", "20", name)
        _stop_tree(process)
        if backend.name == "buildah":
            backend.call("rm", name)


@contextmanager
def run_image(backend: Backend, image: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start the image's entrypoint serving on 127.0.0.1:``port``; stop it (and remove its container) on exit."""
    if backend.name == "buildah":
        with run_container(backend, image, ["--host", "127.0.0.1", "--port", str(port)], log) as process:
            yield process
        return
    with run_container(backend, image, [], log, publish=(port, SERVICE_PORT)) as process:
        yield process


def smoke_test_image(
    image: str, production: dict[str, str], timeout: float = 300.0, settings: ImageSettings | None = None
) -> dict[str, Any]:
    """Start the image, wait for /readyz, call every method, stop it; raise :class:`ImageBuildError`."""
    from deploy.smoke import SmokeTestError, call_every_method, free_port, wait_ready

    settings = settings or ImageSettings()
    backend = backend_from(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    log = settings.cache_dir / f"smoke-{image.replace('/', '_').replace(':', '_')}.log"
    started = time.perf_counter()
    with run_image(backend, image, port, log) as process:
        try:
            wait_ready(url, process, timeout)
            ready = time.perf_counter() - started
            timings = call_every_method(url, production)
        except (RuntimeError, TimeoutError) as error:
            tail = log.read_text(errors="replace")[-3000:]
            kind = "smoke test" if isinstance(error, SmokeTestError) else "start"
            raise ImageBuildError(f"{image} ({backend.name}) {kind} failed: {error}; log {log}:\n{tail}") from error
    return {"image": image, "runner": backend.name, "ready_seconds": round(ready, 1), "milliseconds": timings}
