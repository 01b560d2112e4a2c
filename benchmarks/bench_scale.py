"""Benchmark of a universe on Dask (issue 14): training and batch scoring with 1 and 2 workers side by side, memory
per worker, serving 500 symbols' Prophet models, the scheduler's per-task overhead, and a projection to 5,000
symbols x 25 years.

A synthetic universe (``data/synthetic.py``: never a quality figure) of ``MLOPS_SCALE_SYMBOLS`` symbols (200) x
``MLOPS_SCALE_YEARS`` years (15) is trained, all six models, in quick mode (full mode would take hours here: its time
is projected from the per-task costs), on a local cluster of 1 worker and of 2 workers, in the same run. Dask's task
stream records every task's duration under its stage name (``cluster.run_tasks`` keys tasks ``stage-name-run``): the
projection multiplies those costs out. Peak memory per worker is each worker process's peak resident set, for the
universe and for one ten times smaller. Batch scoring (``mlops batch universe``) runs with the models of the 2-worker
training on 1 and 2 workers and is compared with the single-process file batch (``mlops batch``, in a new process)
on the same bars, one thread, and with two such file batches at once, each of half the symbols (what two
processes scoring side by side keep on this machine, without Dask): the four in turn, ``MLOPS_SCALE_BATCH_ROUNDS``
(3) times, medians reported.
Serving: ``price_prophet`` alone is trained (quick, one test year, one origin a year) on 500 synthetic symbols and
served with the other five by ``bentoml serve``: launch to ``/readyz``, resident memory, and
``forecast_price`` latencies the first time a symbol is asked for (its model is read) and again (from the cache).
Run: ``.venv/bin/python benchmarks/bench_scale.py``; it uses temporary stores, never the user's.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

# Dask's worker processes import this module again (spawn): they take the parent's temporary stores, not new ones.
if "MLOPS_BENCH_SCALE_WORK" not in os.environ:
    os.environ["MLOPS_BENCH_SCALE_WORK"] = tempfile.mkdtemp(prefix="mlops-bench-scale-")
WORK = Path(os.environ["MLOPS_BENCH_SCALE_WORK"])
os.environ["BENTOML_HOME"] = str(WORK / "bentoml")
os.environ["MLOPS_HOME"] = str(WORK / "home")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import contention, peak_rss_mib  # noqa: E402
from benchmarks._report import Figure, write_results  # noqa: E402
from benchmarks._scale_batch import batch_on, batch_rounds, rounds_of  # noqa: E402
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
SERVED_SYMBOLS = int(os.environ.get("MLOPS_SCALE_SERVED_SYMBOLS", "500"))
#: Batch scoring's universe: larger than training's (any symbol can be scored), so the rows outweigh the fixed costs.
BATCH_SYMBOLS = int(os.environ.get("MLOPS_SCALE_BATCH_SYMBOLS", "1000"))
ASKED_SYMBOLS = 30  # symbols whose first and second forecasts are timed


def process_cpu_seconds() -> float:
    """CPU seconds of this process so far, all threads: the client, and a local cluster's scheduler and nannies."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
    """``stage-name-run`` -> stage (stages are model names or ``features``/``score``: no dashes; names may have)."""
    text = key if isinstance(key, str) else str(key[0] if isinstance(key, tuple) else key)
    return text.split("-", 1)[0]


def train_on(store: SnapshotStore, info: SnapshotInfo, workers: int) -> dict[str, Any]:
    """Train all six models (quick) on a local cluster of ``workers``: wall time, per-stage task costs, peak memory."""
    from distributed import get_task_stream

    started, cpu = time.perf_counter(), process_cpu_seconds()
    with connect(ClusterSettings(workers=workers)) as client:
        with get_task_stream(client) as stream:
            run = train(info.id, config=TrainingConfig.quick(), store=store, client=client)
        peaks = client.run(peak_rss_mib)
    wall, client_cpu = time.perf_counter() - started, process_cpu_seconds() - cpu
    if not run.ok:
        raise RuntimeError(f"training on {workers} worker(s) failed: {run.failures}")
    stages: dict[str, list[float]] = defaultdict(list)
    for task in stream.data:
        compute = [s for s in task.get("startstops", []) if s.get("action") == "compute"]
        if compute:
            stages[stage_of(task["key"])].append(sum(s["stop"] - s["start"] for s in compute))
    tags = {r.name: r.tag for r in run.results}
    return {
        "wall": wall,
        "stages": dict(stages),
        "peak_mb": max(peaks.values()),
        "tags": tags,
        "client_cpu": client_cpu,
    }


def serve_prophet_universe(store: SnapshotStore, tags: dict[str, str]) -> dict[str, Any]:
    """Train price_prophet on ``SERVED_SYMBOLS`` symbols, serve it with the other five: start, memory, latencies."""
    import json
    import statistics
    import urllib.request

    from benchmarks._http import Server
    from training.registry.promotion import Registry

    info, _ = pull(SyntheticSource(symbols=SERVED_SYMBOLS, years=YEARS, seed=1), store)
    config = TrainingConfig.quick(test_years=1, prophet_origin_step=252)
    started = time.perf_counter()
    with connect(ClusterSettings(workers=2)) as client:
        run = train(info.id, names=("price_prophet",), config=config, store=store, client=client)
    if not run.ok:
        raise RuntimeError(f"price_prophet on {SERVED_SYMBOLS} symbols failed: {run.failures}")
    trained = time.perf_counter() - started
    prophet = run.results[0].tag
    Registry().promote([*tags.values(), prophet], reason="scale benchmark")
    import bentoml

    size_mb = sum(f.stat().st_size for f in Path(bentoml.models.get(prophet).path).rglob("*") if f.is_file()) / 1e6
    server = Server("bentos.service:MarketModels")
    try:
        cold = server.start()
        rss = process_tree_rss_mb(server)

        def forecast(symbol: str) -> float:
            body = json.dumps({"symbol": symbol, "periods": 10}).encode()
            request = urllib.request.Request(server.url + "/forecast_price", body, {"Content-Type": "application/json"})
            began = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
            return 1e3 * (time.perf_counter() - began)

        asked = info.symbols[:: max(len(info.symbols) // ASKED_SYMBOLS, 1)][:ASKED_SYMBOLS]
        first = [forecast(symbol) for symbol in asked]
        later = [forecast(symbol) for symbol in asked for _ in range(3)]
        rss_after = process_tree_rss_mb(server)
    finally:
        server.stop()
    return {
        "cold": cold,
        "rss": rss,
        "rss_after": rss_after,
        "first_p50": statistics.median(first),
        "later_p50": statistics.median(later),
        "size_mb": size_mb,
        "train_seconds": trained,
    }


def process_tree_rss_mb(server: Any) -> float:
    """Resident memory of the serve process and its workers, in MB."""
    pids = [server.process.pid, *server.worker_pids()]
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def task_total(measured: dict[str, Any]) -> float:
    """Compute seconds of every task of a run, summed."""
    return sum(sum(d) for d in measured["stages"].values())


def client_share(measured: dict[str, Any]) -> float:
    """Seconds of a run's wall time not covered by its tasks spread over its workers: the client's own work."""
    return max(measured["wall"] - task_total(measured) / measured["workers"], 0.0)


def projection(measured: dict[str, Any], smaller: dict[str, Any], overhead_ms: float) -> dict[str, Any]:
    """Wall time of a quick-mode training of the target universe on 10 and 50 workers, from the measured tasks.

    Assumptions: a per-symbol task (a stage with about one task per symbol) costs in proportion to its symbol's
    years and there are 5,000 of them; every other task (pooled folds and fits, regime refits) costs in proportion
    to the pooled rows up to ``max_training_rows`` (fits past it use a sample of that size), the forest's to the rows
    its trees grow on, up to ``rf_tree_rows`` (each tree's bootstrap sample past it); the work spreads evenly
    over the workers but no faster than its longest task; each task adds the measured scheduler overhead; the
    client's own work (panel assembly, cards, report: the measured wall time minus the task time per worker) is
    fitted as a fixed part plus a part per symbol-year from the two universes measured.
    """
    config = TrainingConfig.quick()
    cap = config.max_training_rows or float("inf")
    year_ratio = TARGET["years"] / YEARS
    rows_now = SYMBOLS * YEARS
    rows_then = min(TARGET["symbols"] * TARGET["years"], cap / 252 if cap != float("inf") else float("inf"))
    tree_cap = config.rf_tree_rows / 252 if config.rf_tree_rows else float("inf")  # in symbol-years, like the rows
    total, longest, count = 0.0, 0.0, 0
    for stage, durations in measured["stages"].items():
        per_symbol = len(durations) >= SYMBOLS * 0.9
        if per_symbol:
            scale, tasks = year_ratio, round(len(durations) * TARGET["symbols"] / SYMBOLS)
        elif stage == "return_random_forest":
            scale, tasks = min(rows_then, tree_cap) / min(rows_now, tree_cap), len(durations)
        else:
            scale, tasks = rows_then / rows_now, len(durations)
        mean = sum(durations) / len(durations)
        total += mean * scale * tasks
        longest = max(longest, max(durations) * scale)
        count += tasks
    # the client's share, fitted as fixed + per-symbol-year from the two universes (it is not all per-row work:
    # cluster start, imports and the report's fixed costs are there too)
    small_rows = smaller["symbols"] * YEARS
    per_row = max((client_share(measured) - client_share(smaller)) / max(rows_now - small_rows, 1e-9), 0.0)
    fixed = max(client_share(measured) - per_row * rows_now, 0.0)
    client_then = fixed + per_row * TARGET["symbols"] * TARGET["years"]
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
    together = contention()
    print(f"overhead {overhead:.2f} ms a task", flush=True)
    one = train_on(store, big, 1) | {"workers": 1}
    print(f"1 worker: {one['wall']:.0f} s", flush=True)
    two = train_on(store, big, 2) | {"workers": 2}
    print(f"2 workers: {two['wall']:.0f} s", flush=True)
    tenth = train_on(store, small, 2) | {"workers": 2, "symbols": max(SYMBOLS // 10, 2)}
    tags = {name: tag for name, tag in two["tags"].items() if name != "price_prophet"}
    scored, _ = pull(SyntheticSource(symbols=BATCH_SYMBOLS, years=YEARS, seed=2), store)
    scored_tenth, _ = pull(SyntheticSource(symbols=max(BATCH_SYMBOLS // 10, 2), years=YEARS, seed=2), store)
    single, pair, batch_one, batch_two = batch_rounds(store, scored, tags)
    print(f"batch in a process: {single['rate']:,.0f} rows/s", flush=True)
    batch_tenth = batch_on(store, scored_tenth, tags, 2)
    print(f"batch: {batch_one['rate']:,.0f} and {batch_two['rate']:,.0f} rows/s", flush=True)
    served = serve_prophet_universe(store, tags)
    print(f"served {SERVED_SYMBOLS} Prophet symbols: ready in {served['cold']:.1f} s", flush=True)
    speedup = one["wall"] / two["wall"]
    growth = 100 * (two["peak_mb"] / tenth["peak_mb"] - 1)
    inflation = 100 * (task_total(two) / task_total(one) - 1)
    batch_speedup = batch_two["rate"] / batch_one["rate"]
    per_worker = 100 * batch_two["rate"] / 2 / single["rate"]
    per_worker_warm = 100 * batch_two["warm_rate"] / 2 / single["rate"]
    pair_share = 100 * pair["rate"] / single["rate"]
    batch_growth = 100 * (batch_two["peak_mb"] / batch_tenth["peak_mb"] - 1)
    projected = projection(two, tenth, overhead)
    universe = f"{SYMBOLS} synthetic symbols x {YEARS:g} years"
    figures = [
        Figure(f"training, all six models (quick), {universe}, 1 worker", f"{one['wall']:.0f} s", round(one["wall"]),
               "s", key="train_1"),
        Figure("training, same, 2 workers", f"{two['wall']:.0f} s", round(two["wall"]), "s", key="train_2"),
        Figure("training speed-up, 2 workers / 1", f"{speedup:.2f}x", round(speedup, 2), "x", ">= 1.7", "speedup"),
        Figure(
            f"peak memory per worker, training, {SYMBOLS} symbols against {max(SYMBOLS // 10, 2)} (2 workers; the "
            "pooled panel is on every worker)",
            f"{two['peak_mb']:.0f} MB vs {tenth['peak_mb']:.0f} MB ({growth:+.0f} %)",
            round(growth, 1),
            "%",
            key="train_memory_growth",
        ),
        Figure(f"batch scoring, {BATCH_SYMBOLS} synthetic symbols x {YEARS:g} years, single-process file batch, "
               f"one thread, a new process ({single['rows']:,} rows scored)",
               f"{single['rate']:,.0f} rows/s ({rounds_of(single)})", round(single["rate"]), "rows/s",
               key="batch_single"),
        Figure("batch scoring, two single-process file batches at once (half the symbols each, no Dask): rows/s "
               "of each process", f"{pair['rate']:,.0f} rows/s ({rounds_of(pair)})", round(pair["rate"]), "rows/s",
               key="batch_pair"),
        Figure("batch throughput per process, two at once / one alone (this machine's ceiling for the per-worker "
               "figures)", f"{pair_share:.0f} %", round(pair_share), "%", key="batch_pair_share"),
        Figure("batch scoring, mlops batch universe, 1 worker, cold (model loading included, imports not: as the "
               "single process)",
               f"{batch_one['rate']:,.0f} rows/s ({rounds_of(batch_one)})", round(batch_one["rate"]), "rows/s",
               key="batch_1"),
        Figure("batch scoring, same, 2 workers, cold", f"{batch_two['rate']:,.0f} rows/s ({rounds_of(batch_two)})",
               round(batch_two["rate"]), "rows/s", key="batch_2"),
        Figure("batch speed-up, 2 workers / 1 (cold)", f"{batch_speedup:.2f}x", round(batch_speedup, 2), "x",
               ">= 1.7", "batch_speedup"),
        Figure("batch throughput per worker (2 workers, cold) / single-process batch", f"{per_worker:.0f} %",
               round(per_worker), "%", ">= 80", "batch_per_worker"),
        Figure("batch throughput per worker (2 workers, warm: a standing cluster's second run, models loaded) / "
               "single-process batch", f"{per_worker_warm:.0f} %", round(per_worker_warm), "%", ">= 80",
               "batch_per_worker_warm"),
        Figure(
            f"peak memory per worker, batch, {BATCH_SYMBOLS} symbols against {max(BATCH_SYMBOLS // 10, 2)} "
            "(2 workers)",
            f"{batch_two['peak_mb']:.0f} MB vs {batch_tenth['peak_mb']:.0f} MB ({batch_growth:+.0f} %)",
            round(batch_growth, 1),
            "%",
            "<= +10 %",
            "worker_memory_growth",
        ),
        Figure(f"serving {SERVED_SYMBOLS} symbols' Prophet models ({served['size_mb']:.0f} MB): launch to /readyz",
               f"{served['cold']:.1f} s", round(served["cold"], 1), "s", "< 10", "serve_cold_start"),
        Figure("serving, resident memory after start (server and worker)", f"{served['rss']:.0f} MB",
               round(served["rss"]), "MB", key="serve_memory"),
        Figure(f"serving, forecast_price p50, first request of a symbol ({ASKED_SYMBOLS} symbols)",
               f"{served['first_p50']:.0f} ms", round(served["first_p50"]), "ms", key="serve_first_p50"),
        Figure("serving, forecast_price p50, later requests (cached)", f"{served['later_p50']:.0f} ms",
               round(served["later_p50"]), "ms", key="serve_later_p50"),
        Figure(f"serving, resident memory after {ASKED_SYMBOLS} symbols' forecasts", f"{served['rss_after']:.0f} MB",
               round(served["rss_after"]), "MB", key="serve_memory_after"),
        Figure("task compute summed over the training's tasks, 2 workers against 1 (a task's wall time: it grows "
               "when the client process or a Prophet fit's CmdStan process holds the core a worker would use)",
               f"{task_total(two):,.0f} s vs {task_total(one):,.0f} s ({inflation:+.0f} %)",
               round(inflation, 1), "%", key="task_inflation"),
        Figure("CPU of the client process during the training (cards, report, the local cluster's scheduler), 1 and "
               "2 workers", f"{one['client_cpu']:,.0f} s and {two['client_cpu']:,.0f} s", round(two["client_cpu"]),
               "s", key="client_cpu"),
        Figure("a single-threaded forest fit with another at once in a second process / alone (two CPU-bound "
               "processes on the two cores)", f"{together:.2f}x", round(together, 2), "x", key="contention"),
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
