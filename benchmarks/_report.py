"""Shared helpers of the benchmark scripts: timing and writing the recorded figures beside the scripts."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def time_calls(function: Callable[[], object], repeats: int, warmup: int = 20) -> np.ndarray:
    """Wall time of each of ``repeats`` calls, in milliseconds."""
    for _ in range(warmup):
        function()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        function()
        times[i] = time.perf_counter() - start
    return times * 1e3


def machine() -> str:
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("numpy", "pandas"))
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {versions}"


def write_results(name: str, command: str, rows: list[tuple[str, str, str, bool]], notes: str = "") -> Path:
    """Write ``results/<name>.md``: one row per figure (what, measured, target, met)."""
    RESULTS.mkdir(exist_ok=True)
    lines = [
        f"# {name}",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}.",
        f"Rerun with `{command}`.",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
        *(f"| {what} | {value} | {target} | {'yes' if ok else 'NO'} |" for what, value, target, ok in rows),
    ]
    if notes:
        lines += ["", notes]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    return path
