"""What recording every answer (``bentos/recording.py``) costs ``predict_direction``, for ``bench_service.py``.

Two servers of the service started for this comparison alone, the same but for ``MLOPS_RECORD_ANSWERS``, each
serving only ``predict_direction``. (Until this comparison had servers of its own, the recording side was the
benchmark's main server, which also answers ``predict_all`` and ``forecast_price`` and keeps their Prophet cache and
heap: a difference between the two servers that was not recording's.) After one discarded round each (the first
record opens the log file), wrk rounds take turns between them, in reversed order every other round,
``MLOPS_BENCH_RECORDING_ROUNDS`` (12) times; a figure is the median of the rounds' ratios.

Two more servers split recording's cost in its parts (``benchmarks/recording_parts.py``): ``rows only`` builds
every answer's rows as the service does and writes nothing; ``write only`` writes the same pre-built rows for every
answer through BentoML's default monitor and builds nothing. Both serve the window without a symbol.

Beside the rates, each server's worker CPU time per request: its processes' user + system time (psutil) over a
round, divided by the requests wrk completed in it. Under wrk's load the worker holds its core, so its throughput
is about the inverse of that CPU time, and the CPU time moves less than the rate with the other load of a shared
2-core VM (wrk itself takes the other core).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks._http import WRK_CONNECTIONS, WRK_SECONDS, WRK_THREADS, Endpoint, Server, wrk_run
from benchmarks._report import Figure

ROUNDS = int(os.environ.get("MLOPS_BENCH_RECORDING_ROUNDS", "12"))
#: predict_direction's throughput while recording every answer, at least this share of its throughput without
TARGET = 0.9
RECORDING = "recording"
NAMED = "recording, symbol named"
OFF = "not recording"
ROWS = "rows only (built, not written)"
WRITE = "write only (pre-built rows written)"
PARTS = "benchmarks.recording_parts:MarketModels"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` so far."""
    import psutil

    return sum(sum(psutil.Process(pid).cpu_times()[:2]) for pid in pids)


@dataclass
class RecordingCost:
    rates: dict[str, list[float]]  # requests per second, per round
    cpu_ms: dict[str, list[float]]  # the worker's CPU ms per request, per round
    workers: dict[str, list[int]]


def measure(target: str, window_body: bytes, named_body: bytes) -> RecordingCost:
    """Serve ``target`` recording and not recording and take turns under wrk (module docstring)."""
    recording = Server(target)
    off = Server(target, env={"MLOPS_RECORD_ANSWERS": "false"})
    rows = Server(PARTS, env={"MLOPS_BENCH_RECORDING_PART": "rows"})
    write = Server(PARTS, env={"MLOPS_BENCH_RECORDING_PART": "write"})
    servers = {RECORDING: recording, OFF: off, ROWS: rows, WRITE: write}
    endpoints = [
        Endpoint(RECORDING, recording, "/predict_direction", window_body),
        Endpoint(NAMED, recording, "/predict_direction", named_body),
        Endpoint(OFF, off, "/predict_direction", window_body),
        Endpoint(ROWS, rows, "/predict_direction", window_body),
        Endpoint(WRITE, write, "/predict_direction", window_body),
    ]
    rates: dict[str, list[float]] = {e.label: [] for e in endpoints}
    cpu_ms: dict[str, list[float]] = {e.label: [] for e in endpoints}
    try:
        for server in servers.values():
            server.start()
        workers = {label: server.worker_pids() for label, server in servers.items()}
        with tempfile.TemporaryDirectory(prefix="bench-recording-") as scripts:
            for endpoint in endpoints:  # warm-up, not counted
                wrk_run(endpoint, Path(scripts))
            for round_ in range(ROUNDS):
                for endpoint in endpoints if round_ % 2 == 0 else endpoints[::-1]:
                    pids = endpoint.server.worker_pids()
                    before = cpu_seconds(pids)
                    rate, requests = wrk_run(endpoint, Path(scripts))
                    rates[endpoint.label].append(rate)
                    cpu_ms[endpoint.label].append(1e3 * (cpu_seconds(pids) - before) / requests)
                    print(
                        f"recording cost round {round_ + 1} {endpoint.label}: {rate:.0f} req/s, "
                        f"{cpu_ms[endpoint.label][-1]:.3f} CPU ms a request",
                        flush=True,
                    )
    finally:
        for server in servers.values():
            server.stop()
    return RecordingCost(rates, cpu_ms, workers)


def figures(cost: RecordingCost) -> list[Figure]:
    """The rates, the CPU per request, and the shares kept (keys ``recording_share[_named|_rows|_write]``)."""
    wrk = f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s, median of {ROUNDS}"
    out = []
    for label in (RECORDING, NAMED, OFF, ROWS, WRITE):
        rate, cpu = statistics.median(cost.rates[label]), statistics.median(cost.cpu_ms[label])
        out += [
            Figure(
                f"recording cost: throughput, predict_direction, {label} ({wrk})",
                f"{rate:.0f} req/s ({', '.join(f'{v:.0f}' for v in cost.rates[label])})",
                round(rate),
                "req/s",
            ),
            Figure(
                f"recording cost: worker CPU per request, predict_direction, {label} (median of {ROUNDS})",
                f"{cpu:.3f} ms",
                round(cpu, 3),
                "ms",
            ),
        ]
    for label, what, key in (
        (RECORDING, "window without a symbol (its digest recorded)", "recording_share"),
        (NAMED, "symbol named", "recording_share_named"),
        (ROWS, "one part: every answer's rows built, nothing written (window)", "recording_share_rows"),
        (WRITE, "the other part: pre-built rows written, nothing built (window)", "recording_share_write"),
    ):
        target = f">= {TARGET:.0%}" if label in (RECORDING, NAMED) else "-"
        pairs = zip(cost.rates[label], cost.rates[OFF], strict=True)
        share = round(100 * statistics.median(x / f for x, f in pairs))
        cpu_pairs = zip(cost.cpu_ms[OFF], cost.cpu_ms[label], strict=True)
        cpu_share = round(100 * statistics.median(off / on for off, on in cpu_pairs))
        out += [
            Figure(
                f"throughput, predict_direction recording every answer / not recording, {what} (median of per-round "
                "ratios)",
                f"{share}%",
                share,
                "%",
                target,
                key,
            ),
            Figure(
                f"worker CPU per request, not recording / recording every answer, {what} (median of per-round "
                "ratios: the throughput a worker holding its core keeps)",
                f"{cpu_share}%",
                cpu_share,
                "%",
                key=f"{key}_cpu",
            ),
        ]
    return out
