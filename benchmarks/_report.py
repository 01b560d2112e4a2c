"""Shared helpers of the benchmark scripts: timing, and the recorded figures beside the scripts.

Each benchmark writes ``results/<name>.md`` (a table to read) and its twin ``results/<name>.json`` (the same
figures for programs: ``readme_figures.py`` builds the README's figures from it). A figure's "met" is computed from
its value and its target, never typed: no target, or no value, is "-".
"""

from __future__ import annotations

import json
import operator
import os
import platform
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "=": operator.eq,
}
# units a target may be written in when the figure's unit differs: (dimension, size in the dimension's base unit)
SCALES = {
    "µs": ("time", 1e-6),
    "ms": ("time", 1e-3),
    "s": ("time", 1.0),
    "MB": ("bytes", 1e6),
    "GB": ("bytes", 1e9),
    "MiB": ("bytes", 2.0**20),
    "GiB": ("bytes", 2.0**30),
}
# an optional statistic ("p50"), the operator, the bound, its unit, an optional comment in brackets
TARGET = re.compile(r"(?:p\d+\s+)?(<=|>=|<|>|=)\s*([+-]?\d+(?:\.\d+)?)\s*([^\s(]*)\s*(?:\(.*\))?")


@dataclass(frozen=True)
class Target:
    """A target parsed into an operator and a bound in the figure's unit."""

    operator: str
    bound: float

    def met(self, value: float) -> bool:
        return bool(COMPARISONS[self.operator](value, self.bound))


def parse_target(text: str, unit: str) -> Target | None:
    """``"< 10 s"``, ``"p50 < 2 ms"``, ``">= 80 %"``, ``"<= 1.5x"``, ``"<= +10 %"``, ``"< 1 GiB (k8s request)"``, for a
    figure measured in ``unit``; None for "-" (no target). A bound without a unit is in the figure's unit."""
    if text.strip() in {"", "-"}:
        return None
    match = TARGET.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"target {text!r} is not '<op> <number> [unit] [(comment)]', <op> one of {list(COMPARISONS)}")
    op, number, target_unit = match.groups()
    bound = float(number)
    if target_unit and target_unit != unit:
        if SCALES.get(target_unit, ("?", 0))[0] != SCALES.get(unit, ("", 0))[0]:
            raise ValueError(f"target {text!r} is in {target_unit!r}, which does not convert to the figure's {unit!r}")
        bound *= SCALES[target_unit][1] / SCALES[unit][1]
    return Target(op, bound)


def met(value: float | None, unit: str, target: str) -> bool | None:
    """Whether ``value`` meets ``target``; None when there is no target or no value to judge."""
    parsed = parse_target(target, unit)
    return None if parsed is None or value is None else parsed.met(value)


@dataclass(frozen=True)
class Figure:
    """One measured figure: ``shown`` as the table prints it, ``value`` (its headline number) in ``unit``.

    ``key`` names the figures the README quotes (``<results name>.<key>``); keep it stable across runs.
    """

    what: str
    shown: str
    value: float | None = None
    unit: str = ""
    target: str = "-"
    key: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "what": self.what,
            "shown": self.shown,
            "value": self.value,
            "unit": self.unit,
            "target": self.target,
            "met": met(self.value, self.unit, self.target),
        }


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


def write_results(name: str, command: str, figures: list[Figure], notes: str = "") -> Path:
    """Write ``results/<name>.md`` and ``results/<name>.json``: one row per figure (what, measured, target, met)."""
    keys = [f.key for f in figures if f.key]
    if len(keys) != len(set(keys)):
        raise ValueError(f"{name}: figure keys repeat: {sorted(keys)}")
    record = {
        "name": name,
        "measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "machine": machine(),
        "command": command,
        "figures": [f.record() for f in figures],
        "notes": notes,
    }
    return save(record)


def save(record: dict[str, Any], directory: Path = RESULTS) -> Path:
    """Write a results record as its JSON and its Markdown table; returns the Markdown file."""
    directory.mkdir(exist_ok=True)
    (directory / f"{record['name']}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    path = directory / f"{record['name']}.md"
    path.write_text(markdown(record))
    return path


def markdown(record: dict[str, Any]) -> str:
    """The Markdown table of a results record."""
    lines = [
        f"# {record['name']}",
        "",
        f"Measured {record['measured']} on {record['machine']}.",
        f"Rerun with `{record['command']}`.",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
        *(f"| {f['what']} | {f['shown']} | {f['target']} | {met_text(f['met'])} |" for f in record["figures"]),
    ]
    if record["notes"]:
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def met_text(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "NO"


def load_results(directory: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """Every results record under ``directory``, by name."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}
