"""Serving a target with ``bentoml serve`` and measuring it over HTTP: the tools of bench_service and bench_load."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEQUENTIAL_REQUESTS = 300
SEQUENTIAL_WARMUP = 30
WRK_THREADS, WRK_CONNECTIONS = 1, 8
WRK_SECONDS = int(os.environ.get("MLOPS_BENCH_SECONDS", "6"))


# servers -----------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


@dataclass
class Server:
    """One ``bentoml serve`` process (its own session, so it and its worker stop together)."""

    target: str
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    startup_seconds: float = float("nan")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> float:
        """Launch and wait for ``/readyz``; return the seconds from launch to ready."""
        fd, name = tempfile.mkstemp(prefix="bench-serve-", suffix=".log")
        self.log = Path(name)
        command = [sys.executable, "-m", "bentoml", "serve", self.target, "--port", str(self.port)]
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1"],
            cwd=self.cwd,
            env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(fd)
        while not ready(self.url):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited:\n{self.log.read_text(errors='replace')[-4000:]}")
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"{self.target} not ready after {timeout:.0f} s")
            time.sleep(0.02)
        self.startup_seconds = time.perf_counter() - started
        return self.startup_seconds

    def worker_pids(self) -> list[int]:
        """The server's worker processes (for py-spy): the children of the serve process."""
        assert self.process is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)  # the session this script started for the server
            self.process.wait()
        self.process = None
        if self.log is not None:
            self.log.unlink(missing_ok=True)


# measurements ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    label: str
    server: Server
    path: str
    body: bytes
    floor: str = "echo"  # the echo endpoint it is compared with


def sequential(endpoints: list[Endpoint]) -> dict[str, tuple[float, float, Any]]:
    """p50 and p99 (ms) of one-at-a-time requests, and the last answer, per endpoint.

    One keep-alive connection per endpoint; the endpoints take turns request by request, so a noisy moment on a
    shared machine lands on all of them alike instead of on whichever happened to be measured then.
    """
    headers = {"Content-Type": "application/json"}
    connections = {e.label: http.client.HTTPConnection("127.0.0.1", e.server.port, timeout=60) for e in endpoints}
    times: dict[str, list[float]] = {e.label: [] for e in endpoints}
    answers: dict[str, Any] = {}
    for i in range(SEQUENTIAL_WARMUP + SEQUENTIAL_REQUESTS):
        for endpoint in endpoints:
            connection = connections[endpoint.label]
            started = time.perf_counter()
            connection.request("POST", endpoint.path, body=endpoint.body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"{endpoint.label}: HTTP {response.status}: {payload[:500]!r}")
            if i >= SEQUENTIAL_WARMUP:
                times[endpoint.label].append(elapsed * 1e3)
            answers[endpoint.label] = payload
    for connection in connections.values():
        connection.close()
    result = {}
    for label, values in times.items():
        values.sort()
        result[label] = (statistics.median(values), values[int(0.99 * (len(values) - 1))], json.loads(answers[label]))
    return result


def wrk(endpoint: Endpoint, script_dir: Path) -> float:
    """Requests per second under ``wrk -t1 -c8`` for WRK_SECONDS; every answer must be 2xx."""
    return wrk_run(endpoint, script_dir)[0]


def wrk_run(endpoint: Endpoint, script_dir: Path) -> tuple[float, int]:
    """:func:`wrk`'s requests per second and the number of requests it completed."""
    body_file = script_dir / f"{endpoint.label}.json"
    body_file.write_bytes(endpoint.body)
    script = script_dir / f"{endpoint.label}.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'local f = assert(io.open("{body_file}", "rb"))\n'
        'wrk.body = f:read("*a")\n'
        "f:close()\n"
    )
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", "--timeout", "10s"]
    out = subprocess.run(
        [*command, "-s", str(script), endpoint.server.url + endpoint.path],
        capture_output=True,
        text=True,
        timeout=WRK_SECONDS + 30,
        check=True,
    ).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    if bad or errors:
        raise RuntimeError(f"{endpoint.label}: wrk saw failures:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in ", out)
    assert match and count, out
    return float(match.group(1)), int(count.group(1))


def coalescing(server: Server) -> tuple[float, float]:
    """From the server's /metrics: feature computations of one-window requests, and windows per computation."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    total = {
        kind: sum(
            float(v) for v in re.findall(rf"^mlops_feature_pass_windows_{kind}(?:\{{.*\}})? ([\d.e+]+)$", text, re.M)
        )
        for kind in ("sum", "count")
    }
    return total["count"], total["sum"] / total["count"] if total["count"] else float("nan")
