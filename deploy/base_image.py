"""A Python 3.11 base image built from the machine's own Debian mirror, for when `python:3.11-slim` cannot be pulled.

`debootstrap --variant=minbase` of Debian bookworm (whose python3 is 3.11) from the mirror configured in
/etc/apt/sources.list(.d), then `deploy/base-image/customize.sh` in a chroot (security updates, pip installing
system-wide, no docs or package lists), imported as a one-layer image. The image is cached in the backend's own
storage under a tag derived from everything that went into it, so a later build, or a fresh clone, reuses it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy.oci import Backend, ImageToolError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CUSTOMIZE_SCRIPT = PROJECT_ROOT / "deploy" / "base-image" / "customize.sh"
BASE_REPOSITORY = "localhost/mlops-finance/python-base"
PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
IMAGE_ENV = {"LANG": "C.UTF-8", "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
ONE_LINE = re.compile(r"^deb\s+(?:\[(?P<options>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)\s*(?P<components>.*)$")


class BaseImageError(RuntimeError):
    """The Debian base image cannot be built here."""


@dataclass(frozen=True)
class AptSource:
    """One `deb` entry of the apt configuration."""

    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""

    def deb822(self) -> str:
        lines = [
            "Types: deb",
            f"URIs: {' '.join(self.uris)}",
            f"Suites: {' '.join(self.suites)}",
            f"Components: {' '.join(self.components)}",
        ]
        return "\n".join([*lines, *([f"Signed-By: {self.signed_by}"] if self.signed_by else [])]) + "\n"


def _one_line_sources(text: str) -> Iterator[AptSource]:
    for line in text.splitlines():
        match = ONE_LINE.match(line.split("#", 1)[0].strip())
        if match:
            options = dict(o.split("=", 1) for o in (match["options"] or "").split() if "=" in o)
            yield AptSource(
                (match["uri"],), (match["suite"],), tuple(match["components"].split()), options.get("signed-by", "")
            )


def _deb822_sources(text: str) -> Iterator[AptSource]:
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        signed_by = fields.get("signed-by", "")
        yield AptSource(
            tuple(fields.get("uris", "").split()),
            tuple(fields.get("suites", "").split()),
            tuple(fields.get("components", "").split()),
            signed_by if signed_by.startswith("/") else "",
        )


def read_apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled `deb` entry of sources.list and sources.list.d/*.list|*.sources, in apt's order."""
    sources: list[AptSource] = []
    if (apt_dir / "sources.list").is_file():
        sources += _one_line_sources((apt_dir / "sources.list").read_text())
    for path in sorted((apt_dir / "sources.list.d").glob("*")):
        if path.suffix == ".list":
            sources += _one_line_sources(path.read_text())
        elif path.suffix == ".sources":
            sources += _deb822_sources(path.read_text())
    return sources


def sources_for_suite(sources: list[AptSource], suite: str) -> list[AptSource]:
    """The entries that serve ``suite`` (and its -updates and -security suites), narrowed to those suites."""
    wanted = (suite, f"{suite}-updates", f"{suite}-security")
    chosen = []
    for source in sources:
        suites = tuple(s for s in source.suites if s in wanted)
        if suites and source.uris and source.components:
            chosen.append(AptSource(source.uris, suites, source.components, source.signed_by))
    if not any(suite in s.suites for s in chosen):
        raise BaseImageError(
            f"no Debian mirror for {suite!r} is configured in /etc/apt/sources.list(.d): add one there, "
            "or name one with MLOPS_IMAGE_DEBIAN_MIRROR (e.g. the URL your apt uses for Debian)"
        )
    return chosen


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that decides the base image's content; its hash names the cached image."""

    suite: str
    architecture: str
    sources: tuple[AptSource, ...]
    packages: tuple[str, ...] = PACKAGES

    @property
    def mirror(self) -> AptSource:
        return next(s for s in self.sources if self.suite in s.suites)

    @property
    def key(self) -> str:
        recipe = {
            "suite": self.suite,
            "architecture": self.architecture,
            "sources": [s.deb822() for s in self.sources],
            "packages": self.packages,
            "customize": hashlib.sha256(CUSTOMIZE_SCRIPT.read_bytes()).hexdigest(),
            "env": IMAGE_ENV,
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def image(self) -> str:
        return f"{BASE_REPOSITORY}:3.11-{self.suite}-{self.architecture}-{self.key}"


def host_recipe(suite: str = "bookworm", mirror: str = "", apt_dir: Path = Path("/etc/apt")) -> BaseRecipe:
    """The recipe for this machine: its configured mirror for ``suite`` (or ``mirror`` if given), its architecture."""
    if mirror:
        sources = [AptSource((mirror,), (suite, f"{suite}-updates"), ("main",))]
    else:
        sources = sources_for_suite(read_apt_sources(apt_dir), suite)
    architecture = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return BaseRecipe(suite, architecture or "amd64", tuple(sources))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(command: list[str], log: Path, what: str) -> None:
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise BaseImageError(f"{what} failed (exit {result.returncode}); full log {log}:\n{tail}")


def build_rootfs(recipe: BaseRecipe, rootfs: Path, log: Path) -> None:
    """debootstrap the recipe's suite into ``rootfs`` and customize it in a chroot."""
    for tool in ("debootstrap", "chroot", "tar"):
        if shutil.which(tool) is None:
            raise BaseImageError(f"{tool} is not installed: `apt-get install {tool}` (as root)")
    if os.geteuid() != 0:
        raise BaseImageError("building the Debian base image needs root (debootstrap and chroot)")
    mirror = recipe.mirror
    keyring = mirror.signed_by if mirror.signed_by and Path(mirror.signed_by).is_file() else DEFAULT_KEYRING
    _run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--arch={recipe.architecture}",
            f"--include={','.join(recipe.packages)}",
            f"--components={','.join(mirror.components)}",
            *([f"--keyring={keyring}"] if Path(keyring).is_file() else []),
            recipe.suite,
            str(rootfs),
            mirror.uris[0],
        ],
        log,
        f"debootstrap {recipe.suite} from {mirror.uris[0]}",
    )
    sources = [
        s
        if not s.signed_by or (rootfs / s.signed_by.lstrip("/")).is_file()
        else AptSource(s.uris, s.suites, s.components)
        for s in recipe.sources
    ]
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text("\n".join(s.deb822() for s in sources))
    shutil.copy2(CUSTOMIZE_SCRIPT, rootfs / "tmp/customize.sh")
    _run(["chroot", str(rootfs), "/bin/sh", "/tmp/customize.sh"], log, "customizing the base root filesystem")


def ensure_base_image(
    backend: Backend, recipe: BaseRecipe, cache_dir: Path, refresh: bool = False, say: Callable[[str], None] = print
) -> tuple[str, bool]:
    """The recipe's image in ``backend``'s storage, built if missing (or if ``refresh``); return (image, was cached)."""
    with _locked(cache_dir / "base-image.lock"):
        if backend.image_exists(recipe.image) and not refresh:
            return recipe.image, True
        say(f"building the Python 3.11 base image {recipe.image} from {recipe.mirror.uris[0]} ({recipe.suite})")
        work = Path(tempfile.mkdtemp(prefix="base-", dir=cache_dir))
        log = cache_dir / "base-image.log"
        log.write_text("")
        try:
            build_rootfs(recipe, work / "rootfs", log)
            tarball = work / "rootfs.tar"
            _run(["tar", "-C", str(work / "rootfs"), "--numeric-owner", "-cf", str(tarball), "."], log, "tar")
            try:
                backend.import_rootfs(tarball, recipe.image, IMAGE_ENV, ["python3"])
            except ImageToolError as error:
                raise BaseImageError(f"importing the base root filesystem: {error}") from error
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return recipe.image, False
