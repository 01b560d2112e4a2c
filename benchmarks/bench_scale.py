"""Benchmark of a universe on Dask (issue 14): training with 1 and 2 workers side by side, memory per worker, the
scheduler's per-task overhead, and a projection to 5,000 symbols x 25 years.

A synthetic universe (``data/synthetic.py``: never a quality figure) of ``MLOPS_SCALE_SYMBOLS`` symbols (200) x
``MLOPS_SCALE_YEARS`` years (15) is trained, all six models, in quick mode (full mode would take hours here: its time
is projected from the per-task costs), on a local cluster of 1 worker and of 2 workers, in the same run. Dask's task
stream records every task's duration under its stage name (``cluster.run_tasks`` keys tasks ``stage-name-run``): the
projection multiplies those costs out. Peak memory per worker is each worker process's peak resident set, for the
universe and for one ten times smaller. Run: ``.venv/bin/python benchmarks/bench_scale.py``; it uses temporary
stores, never the user's.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

WORK = Path(tempfile.mkdtemp(prefix="mlops-bench-scale-"))
os.environ["BENTOML_HOME"] = str(WORK / "bentoml")
os.environ["MLOPS_HOME"] = str(WORK / "home")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import Figure, write_results  # noqa: E402
from cluster import ClusterSettings, connect, run_tasks  # noqa: E402
from data.pull import pull  # noqa: E402
from data.snapshots import SnapshotInfo, SnapshotStore  # noqa: E402
from data.synthetic import SyntheticSource  # noqa: E402
from training.config import TrainingConfig  # noqa: E402
from training.run import train  # noqa: E402

SYMBOLS = int(os.environ.get("MLOPS_SCALE_SYMBOLS", "200"))
YEARS = float(os.environ.get("MLOPS_SCALE_YEARS", "15"))
TARGET = {"symbols": 5000, "years": 25.0, "workers": (10, 50)}
NIGHTLY_SECONDS = 3600.0


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def noop(value: int) -> int:
    return value


def task_overhead_ms(workers: int = 2, tasks: int = 2000) -> float:
    """Wall time per empty task through ``cluster.run_tasks`` on a local cluster of ``workers`` processes."""
    with connect(ClusterSettings(workers=workers)) as client:
        run_tasks(client, "warm", noop, {str(i): (i,) for i in range(100)})
        started = time.perf_counter()
        run_tasks(client, "noop", noop, {str(i): (i,) for i in range(tasks)})
        return 1e3 * (time.perf_counter() - started) / tasks


def stage_of(key: Any) -> str:
    """``stage-name-run`` -> stage (stages may hold dashes: the last two parts are the name's end and the run)."""
    text = key if isinstance(key, str) else str(key[0] if isinstance(key, tuple) else key)
    return text.rsplit("-", 2)[0] if text.count("-") >= 2 else text


def train_on(store: SnapshotStore, info: SnapshotInfo, workers: int) -> dict[str, Any]:
    """Train all six models (quick) on a local cluster of ``workers``: wall time, per-stage task costs, peak memory."""
    from distributed import get_task_stream

    started = time.perf_counter()
    with connect(ClusterSettings(workers=workers)) as client:
        with get_task_stream(client) as stream:
            run = train(info.id, config=TrainingConfig.quick(), store=store, client=client)
        peaks = client.run(peak_rss_mb)
    wall = time.perf_counter() - started
    if not run.ok:
        raise RuntimeError(f"training on {workers} worker(s) failed: {run.failures}")
    stages: dict[str, list[float]] = defaultdict(list)
    for task in stream.data:
        compute = [s for s in task.get("startstops", []) if s.get("action") == "compute"]
        if compute:
            stages[stage_of(task["key"])].append(sum(s["stop"] - s["start"] for s in compute))
    return {"wall": wall, "stages": dict(stages), "peak_mb": max(peaks.values())}


def projection(measured: dict[str, Any], overhead_ms: float) -> dict[str, Any]:
    """Wall time of a quick-mode training of the target universe on 10 and 50 workers, from the measured tasks.

    Assumptions: a per-symbol task (a stage with about one task per symbol) costs in proportion to its symbol's
    years and there are 5,000 of them; every other task (pooled folds and fits, regime refits) costs in proportion
    to the pooled rows up to ``max_training_rows`` (fits past it use a sample of that size); the work spreads evenly
    over the workers but no faster than its longest task; each task adds the measured scheduler overhead; the
    client's own work (panel assembly, cards, report) is the measured wall time minus the task time per worker.
    """
    config = TrainingConfig.quick()
    cap = config.max_training_rows or float("inf")
    year_ratio = TARGET["years"] / YEARS
    rows_now = SYMBOLS * YEARS
    rows_then = min(TARGET["symbols"] * TARGET["years"], cap / 252 if cap != float("inf") else float("inf"))
    total, longest, count = 0.0, 0.0, 0
    for durations in measured["stages"].values():
        per_symbol = len(durations) >= SYMBOLS * 0.9
        if per_symbol:
            scale, tasks = year_ratio, round(len(durations) * TARGET["symbols"] / SYMBOLS)
        else:
            scale, tasks = rows_then / rows_now, len(durations)
        mean = sum(durations) / len(durations)
        total += mean * scale * tasks
        longest = max(longest, max(durations) * scale)
        count += tasks
    task_seconds = sum(sum(d) for d in measured["stages"].values())
    client_seconds = max(measured["wall"] - task_seconds / measured["workers"], 0.0)
    client_then = client_seconds * TARGET["symbols"] * TARGET["years"] / rows_now
    return {w: max(total / w, longest) + count * overhead_ms / 1e3 / w + client_then for w in TARGET["workers"]} | {
        "tasks": count,
        "task_hours": total / 3600,
        "client_seconds": client_then,
    }


def main() -> None:
    load_start = os.getloadavg()[0]
    store = SnapshotStore(WORK / "snapshots")
    big, _ = pull(SyntheticSource(symbols=SYMBOLS, years=YEARS, seed=0), store)
    small, _ = pull(SyntheticSource(symbols=max(SYMBOLS // 10, 2), years=YEARS, seed=0), store)
    overhead = task_overhead_ms()
    print(f"overhead {overhead:.2f} ms a task", flush=True)
    one = train_on(store, big, 1) | {"workers": 1}
    print(f"1 worker: {one['wall']:.0f} s", flush=True)
    two = train_on(store, big, 2) | {"workers": 2}
    print(f"2 workers: {two['wall']:.0f} s", flush=True)
    tenth = train_on(store, small, 2)
    speedup = one["wall"] / two["wall"]
    growth = 100 * (two["peak_mb"] / tenth["peak_mb"] - 1)
    projected = projection(two, overhead)
    universe = f"{SYMBOLS} synthetic symbols x {YEARS:g} years"
    figures = [
        Figure(f"training, all six models (quick), {universe}, 1 worker", f"{one['wall']:.0f} s", round(one["wall"]),
               "s", key="train_1"),
        Figure("training, same, 2 workers", f"{two['wall']:.0f} s", round(two["wall"]), "s", key="train_2"),
        Figure("training speed-up, 2 workers / 1", f"{speedup:.2f}x", round(speedup, 2), "x", ">= 1.7", "speedup"),
        Figure(
            f"peak memory per worker, {SYMBOLS} symbols against {max(SYMBOLS // 10, 2)} (training, 2 workers)",
            f"{two['peak_mb']:.0f} MB vs {tenth['peak_mb']:.0f} MB ({growth:+.0f} %)",
            round(growth, 1),
            "%",
            "<= +10 %",
            "worker_memory_growth",
        ),
        Figure("scheduler overhead per task (2,000 empty tasks, 2 workers)", f"{overhead:.2f} ms", round(overhead, 2),
               "ms", key="task_overhead"),
    ]  # fmt: skip
    for workers in TARGET["workers"]:
        hours = projected[workers] / 3600
        figures.append(
            Figure(
                f"projected quick-mode training, 5,000 symbols x 25 years, {workers} workers",
                f"{hours:.2f} h",
                round(hours, 2),
                "h",
                "< 1 (nightly)" if workers == 50 else "-",
                f"projected_{workers}",
            )
        )
    stages = {
        stage: f"{len(d)} tasks, mean {1e3 * sum(d) / len(d):.0f} ms, max {1e3 * max(d):.0f} ms"
        for stage, d in sorted(two["stages"].items())
    }
    notes = (
        f"Universe: {universe} (seed 0), quick mode. Per-stage task costs with 2 workers: {stages}. Projection: "
        f"{projected['tasks']} tasks, {projected['task_hours']:.1f} task-hours, client-side work "
        f"{projected['client_seconds']:.0f} s; assumptions in `projection`'s docstring.\n\n"
        f"Load average (1 min) at the start and the end: {load_start:.1f} and {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} cores."
    )
    print(write_results("scale", ".venv/bin/python benchmarks/bench_scale.py", figures, notes))


if __name__ == "__main__":
    main()
