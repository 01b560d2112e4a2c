"""Batch scoring in ``benchmarks/bench_scale.py``: ``mlops batch universe`` on 1 and 2 workers and the single-process
file batch in a new process, in turn (the benchmark's temporary stores: ``MLOPS_BENCH_SCALE_WORK``, set by it)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from benchmarks._machine import peak_rss_mib
from cluster import ClusterSettings, connect
from data.snapshots import SnapshotInfo, SnapshotStore
from features.ohlcv import SYMBOL_COLUMN
from scoring.universe import score_universe

WORK = Path(os.environ.get("MLOPS_BENCH_SCALE_WORK", "."))
BATCH_ROUNDS = int(os.environ.get("MLOPS_SCALE_BATCH_ROUNDS", "3"))  # of the single-process, 1- and 2-worker batch


def batch_on(store: SnapshotStore, info: SnapshotInfo, tags: dict[str, str], workers: int) -> dict[str, Any]:
    """``mlops batch universe`` on a fresh local cluster of ``workers``, twice: cold (each worker loads the models
    on its first task) and warm (a standing cluster's nightly run: the models stay loaded in the workers). Rows/s of
    each, and the workers' peak RSS. Neither timing holds the libraries' imports: Dask starts its workers with
    ``spawn``, which imports this benchmark's main module (and the libraries with it) before the worker runs, as
    the single-process batch's child process does before its ``score_file`` starts the clock."""
    import shutil

    runs = []
    with connect(ClusterSettings(workers=workers)) as client:
        for run in ("cold", "warm"):
            output = WORK / f"scores-{info.id[:8]}-{workers}-{run}"
            shutil.rmtree(output, ignore_errors=True)  # an earlier round's: not replaced inside the timing
            started = time.perf_counter()
            summary = score_universe(output, tags, store=store, snapshot=info.id, client=client)
            runs.append((summary.rows_scored, time.perf_counter() - started))
        peaks = client.run(peak_rss_mib)
    (rows, cold), (_, warm) = runs
    return {"rows": rows, "rate": rows / cold, "warm_rate": rows / warm, "peak_mb": max(peaks.values())}


def single_batch(path: str, tags: dict[str, str], out: str = "scored.parquet") -> dict[str, Any]:
    """The single-process file batch (``mlops batch``) of ``path``, one thread (what one worker is given)."""
    from threadpoolctl import threadpool_limits

    from bentos.batch import score_file

    with threadpool_limits(limits=1):
        summary = score_file(path, WORK / out, manifest=tags)
    return {"wall": summary.seconds, "rows": summary.rows_scored, "rate": summary.rows_per_second}


def pair_batch(halves: tuple[Path, Path], tags: dict[str, str]) -> dict[str, Any]:
    """Two single-process file batches at once, each of half the symbols, in processes of their own (started and
    ready before the clock): the throughput a process keeps while another scores beside it on this machine, with
    no Dask in between, the ceiling of the 2-worker per-worker figure. ``rate``: the two processes' mean rows/s."""
    import multiprocessing
    from contextlib import ExitStack

    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        pools = [stack.enter_context(context.Pool(1)) for _ in halves]
        for pool in pools:
            pool.apply(int)  # started: the libraries imported, as before single_batch's own timing
        runs = [
            pool.apply_async(single_batch, (str(half), tags, f"scored-{i}.parquet"))
            for i, (pool, half) in enumerate(zip(pools, halves, strict=True))
        ]
        done = [run.get() for run in runs]
    return {"rows": sum(d["rows"] for d in done), "rate": sum(d["rate"] for d in done) / len(done)}


def batch_rounds(
    store: SnapshotStore, info: SnapshotInfo, tags: dict[str, str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The single-process batch, then two at once (:func:`pair_batch`), then 1 worker, then 2,
    ``BATCH_ROUNDS`` times in turn; each figure the median of its rounds (``rounds`` keeps every one). This VM's
    speed drifts by about 10 % over minutes, which one run of each, minutes apart, took for a difference between
    them. The single-process batch runs in a new process each round, as ``mlops batch`` does, not in this one, whose
    heap holds what the trainings before left."""
    import multiprocessing
    import statistics

    path = WORK / "universe.parquet"
    bars = store.load(info.id)
    bars.to_parquet(path, index=False)
    first = bars[SYMBOL_COLUMN].isin(info.symbols[: len(info.symbols) // 2])
    halves = (WORK / "universe-a.parquet", WORK / "universe-b.parquet")
    bars[first].to_parquet(halves[0], index=False)
    bars[~first].to_parquet(halves[1], index=False)
    del bars, first
    rounds: dict[str, list[dict[str, Any]]] = {"single": [], "pair": [], "one": [], "two": []}
    for _ in range(BATCH_ROUNDS):
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            rounds["single"].append(pool.apply(single_batch, (str(path), tags)))
        rounds["pair"].append(pair_batch(halves, tags))
        rounds["one"].append(batch_on(store, info, tags, 1))
        rounds["two"].append(batch_on(store, info, tags, 2))

    def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
        rates = {k: [r[k] for r in runs] for k in ("rate", "warm_rate") if k in runs[0]}
        return (
            runs[0]
            | {k: statistics.median(v) for k, v in rates.items()}
            | {
                "rounds": rates["rate"],
                "peak_mb": max(r.get("peak_mb", 0.0) for r in runs),
            }
        )

    return median(rounds["single"]), median(rounds["pair"]), median(rounds["one"]), median(rounds["two"])


def rounds_of(measured: dict[str, Any]) -> str:
    return f"median of {len(measured['rounds'])}: " + ", ".join(f"{r:,.0f}" for r in measured["rounds"])
