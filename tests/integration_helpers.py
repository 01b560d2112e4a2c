"""Start a real ``bentoml serve`` on a free local port, wait for it, stop it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from deploy.smoke import stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(
    target: str, env: dict[str, str] | None = None, timeout: float = 90.0, log_path: Path | None = None
) -> Iterator[str]:
    """Serve ``target`` (a service import path or a Bento tag); yield its base URL; stop it afterwards.

    The server's output is kept in ``log_path`` when given (for tests that read it), else thrown away.
    """
    port = free_port()
    # the server's log goes to a file: a pipe nobody reads fills up and blocks the server mid-request
    log = (
        open(log_path, "wb")  # noqa: SIM115
        if log_path is not None
        else tempfile.NamedTemporaryFile(prefix="bentoml-serve-", suffix=".log", delete=False)  # noqa: SIM115
    )
    environment = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **(env or {})}
    environment = {k: v for k, v in environment.items() if v != ""}
    process = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", target, "--port", str(port), "--host", "127.0.0.1"],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, process, timeout)
        except RuntimeError as error:  # the server exited: its log says why
            output = Path(log.name).read_text(errors="replace")
            raise RuntimeError(f"bentoml serve {target}: {error}:\n{output[-4000:]}") from None
        except TimeoutError as error:
            raise TimeoutError(f"bentoml serve {target}: {error}") from None
        yield url
    finally:
        stop(process)
        log.close()
        if log_path is None:
            Path(log.name).unlink(missing_ok=True)


def status(url: str) -> int:
    """The HTTP status of a GET; raises :class:`ConnectionError` (an ``OSError``) when nothing answers."""
    try:
        return httpx.get(url, timeout=5.0).status_code
    except httpx.TransportError as error:
        raise ConnectionError(f"GET {url}: {type(error).__name__}: {error}") from error


def post(
    url: str,
    body: bytes | str | dict[str, Any],
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """POST and return (status, decoded JSON or text), without raising on 4xx/5xx."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
    response = httpx.post(url, content=data, headers={"Content-Type": content_type, **(headers or {})}, timeout=60.0)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text
