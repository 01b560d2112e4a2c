"""Batch scoring of a universe: a snapshot's symbols scored as Dask tasks, one Parquet file per symbol out.

The rows are exactly those of the single-process batch (``bentos/batch.py``) on the same bars: each task runs the
same :class:`~bentos.batch_scoring.BatchScorer` over whole symbols, so a symbol's every date has all the history the
file batch gives it. With ``start``, only rows dated on or after it are scored, with the ``CARRY_BARS`` bars before it
as context (what the file batch carries between chunks) at their place in the symbol's history, so the rows are still
the file batch's, bit for bit.

Work is planned by symbol: consecutive symbols are grouped into tasks of about ``rows_per_task`` bars, each reading
only its symbols' files of the partitioned snapshot (``data/snapshots.py``). A worker process loads the models once,
on its first task, and keeps them for the next (:func:`worker_models`); a task holds one group's bars and scores, so a
worker's memory does not grow with the number of symbols.

The output is a directory: ``symbol=<symbol>/part-0.parquet`` per scored symbol (Hive style, the batch's columns but
the symbol, its schema metadata naming the models) and ``scores.json`` (snapshot, models, rows per symbol). It is
assembled in a hidden directory beside it and renamed into place, so a reader sees a whole run or the previous one.
:func:`read_scores` gives back the single-process batch's table.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client

from bentos.batch_files import DEFAULT_CHUNK_ROWS, TEXT_COLUMNS
from bentos.batch_scoring import CARRY_BARS, BatchModels, BatchScorer
from cluster import run_tasks
from data.snapshots import SnapshotInfo, SnapshotStore, partition_path
from features import DEFAULT_SPEC
from features.ohlcv import SYMBOL_COLUMN

SCORES_MANIFEST = "scores.json"
#: Bars a task scores: the file batch's chunk, large enough that per-task costs vanish, small enough to stay flat.
DEFAULT_ROWS_PER_TASK = DEFAULT_CHUNK_ROWS


class UniverseOutputError(ValueError):
    """The output directory cannot take a universe's scores (it holds something else)."""


@dataclass(frozen=True)
class ScoreTask:
    """What one task scores: some symbols of a snapshot, with the models' tags; everything a worker needs."""

    snapshots: str
    snapshot_id: str
    tags: tuple[tuple[str, str], ...]
    staging: str
    start: str | None
    symbols: tuple[str, ...]


@dataclass(frozen=True)
class TaskResult:
    rows_read: int
    scored: dict[str, int]  # symbol -> rows written
    worker_pid: int
    seconds: float


@dataclass(frozen=True)
class UniverseSummary:
    output: Path
    snapshot: str
    symbols: int
    tasks: int
    rows_read: int
    rows_scored: int
    seconds: float
    models: dict[str, str]
    workers: int  # distinct worker processes that scored

    @property
    def rows_per_second(self) -> float:
        return self.rows_scored / self.seconds if self.seconds > 0 else float("nan")


def plan(info: SnapshotInfo, symbols: Iterable[str], rows_per_task: int) -> list[tuple[str, ...]]:
    """Consecutive symbols (in the snapshot's order) grouped into tasks of about ``rows_per_task`` bars each."""
    groups: list[tuple[str, ...]] = []
    group: list[str] = []
    rows = 0
    wanted = set(symbols)
    for symbol in info.symbols:
        if symbol not in wanted:
            continue
        group.append(symbol)
        rows += info.rows_per_symbol[symbol]
        if rows >= rows_per_task:
            groups.append(tuple(group))
            group, rows = [], 0
    if group:
        groups.append(tuple(group))
    return groups


_MODELS: dict[tuple[tuple[str, str], ...], BatchModels] = {}
_MODELS_LOCK = threading.Lock()
_LOADS = [0]


def worker_models(tags: tuple[tuple[str, str], ...]) -> BatchModels:
    """The models of ``tags``, loaded once per process (a Dask worker keeps them from one task to the next)."""
    with _MODELS_LOCK:
        if tags not in _MODELS:
            _MODELS.clear()  # another manifest's models are not kept beside these
            _MODELS[tags] = BatchModels.load(dict(tags))
            _LOADS[0] += 1
        return _MODELS[tags]


def models_loaded() -> int:
    """How many times this process has loaded a manifest's models (once per worker, unless the manifest changed)."""
    return _LOADS[0]


def score_task(task: ScoreTask) -> TaskResult:
    """Score a task's symbols and write each one's rows to the staging directory (runs on a worker)."""
    started = time.perf_counter()
    models = worker_models(task.tags)
    bars = SnapshotStore(Path(task.snapshots)).load(task.snapshot_id, symbols=task.symbols, verify=True)
    history: dict[str, tuple[int, int]] = {}
    if task.start is not None:
        keep, history = _from_context(bars[SYMBOL_COLUMN].to_numpy(), bars["date"].to_numpy(), task.start)
        bars = bars[keep].reset_index(drop=True)
    table = BatchScorer(models).score(bars, 0, history)
    scored = _write_symbols(table, Path(task.staging))
    return TaskResult(len(bars), scored, os.getpid(), time.perf_counter() - started)


def _from_context(symbols: np.ndarray, dates: np.ndarray, start: str) -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """Rows dated on or after ``start`` and the ``CARRY_BARS`` bars before them, per symbol (bars sorted); and for
    each symbol, where its first kept row sits in its history and how many kept rows are context only."""
    keep = np.zeros(len(symbols), dtype=bool)
    history: dict[str, tuple[int, int]] = {}
    first = np.datetime64(start, "D")
    days = dates.astype("datetime64[D]")
    edges = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1], True])
    for begin, end in itertools.pairwise(edges):
        at = int(np.searchsorted(days[begin:end], first))  # position of the first row to score
        from_position = max(0, at - CARRY_BARS)
        keep[begin + from_position : end] = True
        history[str(symbols[begin])] = (from_position, at - from_position)
    return keep, history


def _write_symbols(table: pa.Table, staging: Path) -> dict[str, int]:
    symbols = table[SYMBOL_COLUMN].to_numpy(zero_copy_only=False)
    edges = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1], True]) if len(symbols) else np.array([0])
    written: dict[str, int] = {}
    for begin, end in itertools.pairwise(edges):
        symbol = str(symbols[begin])
        path = staging / _symbol_file(symbol)
        path.parent.mkdir(parents=True)
        part = table.slice(begin, end - begin).drop_columns([SYMBOL_COLUMN])
        pq.write_table(part, path, use_dictionary=[c for c in TEXT_COLUMNS if c != SYMBOL_COLUMN])
        written[symbol] = int(end - begin)
    return written


def _symbol_file(symbol: str) -> str:
    """``symbol=<symbol>/part-0.parquet``: the snapshot's partition naming, without its ``bars/`` folder."""
    return partition_path(symbol).split("/", 1)[1]


def score_universe(
    output: str | Path,
    tags: Mapping[str, str],
    *,
    store: SnapshotStore,
    snapshot: str = "latest",
    symbols: Iterable[str] | None = None,
    start: date | None = None,
    client: Client | None = None,
    rows_per_task: int = DEFAULT_ROWS_PER_TASK,
    on_done: Callable[[int, int], None] | None = None,
) -> UniverseSummary:
    """Score a snapshot's symbols (all, or ``symbols``) with the models of ``tags`` on ``client``'s cluster (or in
    this process when None); write the output directory and return what was done. A failed task raises
    ``TasksFailed`` naming its symbols, and the previous output, if any, is left as it was."""
    started = time.perf_counter()
    info = store.info(snapshot)
    target = Path(output)
    _check_target(target)
    wanted = set(info.symbols) if symbols is None else {str(s) for s in symbols}
    unknown = sorted(wanted - set(info.symbols))
    chosen = [s for s in info.symbols if s in wanted]  # the snapshot's order, which is the file batch's
    if unknown:
        raise UniverseOutputError(f"snapshot {info.id} has no symbol {', '.join(map(repr, unknown))}")
    run = uuid.uuid4().hex[:8]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial-{run}")
    staging.mkdir()
    frozen = tuple(sorted(tags.items()))
    groups = plan(info, chosen, rows_per_task)
    tasks = {
        f"{group[0]}..{group[-1]}" if len(group) > 1 else group[0]: (
            ScoreTask(
                str(store.root), info.id, frozen, str(staging), None if start is None else start.isoformat(), group
            ),
        )
        for group in groups
    }
    done = [0]

    def progress(_: str) -> None:
        done[0] += 1
        if on_done is not None:
            on_done(done[0], len(tasks))

    try:
        results = run_tasks(client, "score", score_task, tasks, on_done=progress)
        scored = {s: n for result in results.values() for s, n in result.scored.items()}
        rows_read, rows_scored = sum(r.rows_read for r in results.values()), sum(scored.values())
        manifest = {
            "snapshot": info.id,
            "synthetic": info.synthetic,
            "models": dict(frozen),
            "feature_spec": DEFAULT_SPEC.version_hash,
            "start": None if start is None else start.isoformat(),
            "symbols": {s: {"path": _symbol_file(s), "rows": scored[s]} for s in chosen if s in scored},
            "unscored": [s for s in chosen if s not in scored],  # fewer bars than the lookback (after start)
            "rows_read": rows_read,
            "rows_scored": rows_scored,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / SCORES_MANIFEST).write_text(json.dumps(manifest, indent=2))
        _replace(staging, target, run)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    summary = UniverseSummary(
        output=target,
        snapshot=info.id,
        symbols=len(chosen),
        tasks=len(tasks),
        rows_read=rows_read,
        rows_scored=rows_scored,
        seconds=time.perf_counter() - started,
        models=dict(frozen),
        workers=len({r.worker_pid for r in results.values()}),
    )
    return summary


def _check_target(target: Path) -> None:
    if target.exists() and not (target / SCORES_MANIFEST).is_file():
        if target.is_dir() and not any(target.iterdir()):
            return
        raise UniverseOutputError(
            f"{target} exists and is not the output of a universe batch: choose a new directory or remove it"
        )


def _replace(staging: Path, target: Path, run: str) -> None:
    """Put the staged output in place of the target (a previous run's output, an empty directory or nothing)."""
    old = target.with_name(f".{target.name}.old-{run}")
    if target.exists():
        target.rename(old)
    staging.rename(target)
    if old.exists():
        shutil.rmtree(old)


def read_scores(output: str | Path) -> pa.Table:
    """A universe batch's output as one table: the single-process batch's columns and rows, symbols in order."""
    directory = Path(output)
    manifest: dict[str, Any] = json.loads((directory / SCORES_MANIFEST).read_text())
    tables = []
    for symbol, entry in manifest["symbols"].items():
        part = pq.read_table(directory / entry["path"])
        tables.append(part.add_column(0, pa.field(SYMBOL_COLUMN, pa.string(), nullable=False), _repeat(symbol, part)))
    return pa.concat_tables(tables)


def _repeat(symbol: str, part: pa.Table) -> pa.Array:
    return pa.array([symbol] * part.num_rows, pa.string())
