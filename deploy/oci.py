"""OCI image tools behind one interface: Docker where an engine answers, otherwise podman or buildah (daemonless).

Only what the image build needs: pull, build a Containerfile, import a root filesystem, inspect, and the command that
runs an image's entrypoint. Each tool is called through its own command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

BackendName = Literal["docker", "podman", "buildah"]
BACKENDS: tuple[BackendName, ...] = ("docker", "podman", "buildah")


class ImageToolError(RuntimeError):
    """An image tool is missing, unusable here, or failed."""


@dataclass(frozen=True)
class Backend:
    """One image tool: its binary and, for podman and buildah, the storage driver and build isolation."""

    name: BackendName
    binary: str
    storage_driver: str = ""
    isolation: str = "chroot"

    def command(self, *args: str) -> list[str]:
        """The tool's command line with its global options."""
        options = ["--storage-driver", self.storage_driver] if self.storage_driver and self.name != "docker" else []
        return [self.binary, *options, *args]

    def call(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, check=False)

    def image_exists(self, image: str) -> bool:
        if self.name == "buildah":
            return self.call("inspect", "--type", "image", image).returncode == 0
        return self.call("image", "inspect", image).returncode == 0

    def pull(self, image: str, timeout: float) -> str:
        """Pull ``image``; return '' on success, otherwise why it failed (the tool's last line, or the timeout)."""
        try:
            result = self.call("pull", image, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"no answer after {timeout:.0f} s"
        lines = (result.stderr or result.stdout).strip().splitlines()
        return "" if result.returncode == 0 else (lines[-1] if lines else f"exit code {result.returncode}")

    def size_bytes(self, image: str) -> int:
        """Uncompressed size of the image: the sum of its layers, as `docker images` reports it."""
        if self.name == "buildah":
            manifest = json.loads(json.loads(self._checked("inspect", "--type", "image", image))["Manifest"])
            return sum(int(layer["size"]) for layer in manifest["layers"])
        return int(self._checked("image", "inspect", "--format", "{{.Size}}", image).strip())

    def entrypoint(self, image: str) -> list[str]:
        """The image's ENTRYPOINT followed by its CMD."""
        if self.name == "buildah":
            config = json.loads(self._checked("inspect", "--type", "image", image))["OCIv1"]["config"]
        else:
            config = {
                k.lower(): v for k, v in json.loads(self._checked("image", "inspect", image))[0]["Config"].items()
            }
            config = {"Entrypoint": config.get("entrypoint"), "Cmd": config.get("cmd")}
        return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]

    def build_command(
        self, context: Path, containerfile: Path, tags: list[str], secrets: dict[str, Path], layers: bool
    ) -> list[str]:
        """The command that builds ``containerfile`` in ``context`` as ``tags``; ``secrets`` are mounted per step."""
        args = ["build", *(f"--tag={tag}" for tag in tags), "--file", str(containerfile)]
        for name, path in secrets.items():
            args += ["--secret", f"id={name},src={path}"]
        if self.name != "docker":
            args += ["--isolation", self.isolation, "--format", "oci", f"--layers={str(layers).lower()}"]
        return self.command(*args, str(context))

    def import_rootfs(self, tarball: Path, tag: str, env: dict[str, str], cmd: list[str]) -> None:
        """Make an image of one layer from a root filesystem tarball."""
        if self.name == "buildah":
            container = self._checked("from", "scratch").strip()
            try:
                self._checked("add", container, str(tarball), "/")
                self._checked(
                    "config", *(f"--env={k}={v}" for k, v in env.items()), f"--cmd={json.dumps(cmd)}", container
                )
                self._checked("commit", "--format", "oci", container, tag)
            finally:
                self.call("rm", container)
            return
        changes = [f"--change=ENV {k}={v}" for k, v in env.items()] + [f"--change=CMD {json.dumps(cmd)}"]
        self._checked("import", *changes, str(tarball), tag)

    def run_command(self, image: str, command: list[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (not the entrypoint) in a throwaway container of ``image``."""
        if self.name != "buildah":
            return self.call("run", "--rm", "--entrypoint", command[0], image, *command[1:], timeout=timeout)
        container = self._checked("from", image).strip()
        try:
            return self.call("run", "--isolation", self.isolation, container, "--", *command, timeout=timeout)
        finally:
            self.call("rm", container)

    def remove_image(self, image: str) -> None:
        """Remove the name ``image``: only the name if the image has others (its layers stay as build cache)."""
        self.call("rmi", image)

    def _checked(self, *args: str) -> str:
        result = self.call(*args)
        if result.returncode != 0:
            raise ImageToolError(f"`{' '.join(self.command(*args))}` failed: {result.stderr.strip()[-2000:]}")
        return result.stdout


def docker_engine_answers(binary: str, timeout: float = 10.0) -> bool:
    """Whether a Docker engine answers the client (the client alone cannot build or run anything)."""
    try:
        return subprocess.run([binary, "info"], capture_output=True, timeout=timeout, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def detect_backend(preference: str = "auto", storage_driver: str = "", isolation: str = "chroot") -> Backend:
    """The image tool to use: ``preference`` if named, otherwise Docker with an engine, then podman, then buildah."""
    names = BACKENDS if preference == "auto" else (preference,)
    if preference not in ("auto", *BACKENDS):
        raise ImageToolError(f"unknown image backend {preference!r}: choose auto, {', '.join(BACKENDS)}")
    reasons = []
    for name in names:
        binary = shutil.which(name)
        if binary is None:
            reasons.append(f"{name}: not installed")
        elif name == "docker" and not docker_engine_answers(binary):
            reasons.append("docker: the client is installed but no Docker engine answers `docker info`")
        else:
            return Backend(name, binary, storage_driver, isolation)  # type: ignore[arg-type]
    hint = "install buildah (`apt-get install buildah`), or podman, or start a Docker engine"
    raise ImageToolError(f"no usable image backend ({'; '.join(reasons)}): {hint}")


def apt_install(packages: tuple[str, ...], why: str) -> None:
    """Install Debian packages with apt-get (root only); raise :class:`ImageToolError` saying what to do otherwise."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ImageToolError(f"{why}; installing {' '.join(packages)} needs root and apt-get: install them yourself")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-q", "-y", *packages]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise ImageToolError(f"{why}; `{' '.join(command)}` failed: {result.stderr.strip()[-1000:]}")


def ensure_backend(preference: str, storage_driver: str, isolation: str, install: bool) -> Backend:
    """:func:`detect_backend`, first installing buildah with apt if ``install`` and no backend is usable."""
    try:
        return detect_backend(preference, storage_driver, isolation)
    except ImageToolError as error:
        if not install or preference not in ("auto", "buildah"):
            raise
        apt_install(("buildah",), str(error))
    return detect_backend(preference, storage_driver, isolation)
