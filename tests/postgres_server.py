"""A real PostgreSQL server for the tests, started in a temporary folder and stopped afterwards.

Debian's ``postgresql`` package is installed with apt-get where it is missing and the tests run as root; otherwise
the tests that need it are skipped, saying why. PostgreSQL refuses to run as root, so as root the server runs as
the package's ``postgres`` user. It listens on a Unix socket in its folder only (no TCP port).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

INSTALL_TIMEOUT = 900


@dataclass
class Server:
    folder: Path
    bin: Path
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@/mlops?host={self.folder}"

    def stop(self) -> None:
        run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop"])
        shutil.rmtree(self.folder, ignore_errors=True)


def run(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def install() -> str | None:
    """Install Debian's postgresql package; None when it worked, or why it could not be."""
    if binaries() is not None:
        return None
    if os.geteuid() != 0:
        return "PostgreSQL is not installed, and apt-get needs root"
    if shutil.which("apt-get") is None:
        return "PostgreSQL is not installed, and there is no apt-get"
    environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=environment)
        if done.returncode != 0:
            return f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}"
    return None if binaries() is not None else "apt-get installed postgresql, but no initdb was found"


def start() -> Server | str:
    """A running server with an empty database ``mlops``, or why there cannot be one."""
    if (problem := install()) is not None:
        return problem
    bin_dir = binaries()
    assert bin_dir is not None
    folder = Path(tempfile.mkdtemp(prefix="mlops-postgres-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    server = Server(folder, bin_dir, as_user)
    try:
        run(
            [
                *as_user,
                str(bin_dir / "initdb"),
                "-D",
                str(folder / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ]
        )
        options = f"-k {folder} -c listen_addresses='' -c fsync=off"
        run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(folder / "data"), "-o", options, "-l", str(folder / "log"),
             "-w", "start"])  # fmt: skip
        run([*as_user, str(bin_dir / "createdb"), "-h", str(folder), "-U", "postgres", "mlops"])
    except subprocess.SubprocessError as error:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        server.stop()
        return f"PostgreSQL did not start: {error} {getattr(error, 'stderr', '')} {log[-300:]}"
    return server
