"""Benchmark of the service over HTTP (issue: serving), side by side with an echo floor in one run.

The floor is ``benchmarks/echo_service.py``: the production service's BentoML configuration and request /
response schemas, no model. Both run under a real ``bentoml serve`` with one worker on 127.0.0.1.

Targets, for a 300-bar window of the S&P 500: ``predict_direction`` reaches at least 80 % of the echo's
throughput under wrk load and its sequential p50 stays within 1.5x the echo's; the service is ready (process
launch to ``/readyz`` 200) in under 10 s; recording every answer (``bentos/recording.py``) keeps at least 90 % of
``predict_direction``'s throughput without it (``benchmarks/_recording_cost.py``: two servers of their own).
``predict_all`` and ``forecast_price`` are reported alongside.

Run: ``.venv/bin/python benchmarks/bench_service.py`` (needs ``wrk``: ``apt-get install -y wrk``). It trains
quick models into a temporary BentoML store, never the user's. ``MLOPS_BENCH_HOME=/some/dir`` keeps that
store and reuses it on later runs (training takes ~25 s); ``MLOPS_BENCH_ROUNDS`` (default 5) and
``MLOPS_BENCH_SECONDS`` (default 6) set the wrk rounds and their length. ``MLOPS_BENCH_BASELINE=HEAD`` (any git
ref) also serves that commit's ``bentos/`` beside the current one and measures its ``predict_direction`` and cold
start in the same run: before/after figures under the same machine load. On a machine with more than one CPU the
echo and ``predict_direction`` are also measured with their worker pinned to one core (``MLOPS_WORKER_CPUS``).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._stores import bench_home, current_models  # noqa: E402 - before the project: its stores

WORK = bench_home("MLOPS_BENCH_HOME", "mlops-bench-service-")
MANIFEST = WORK / "production.json"

import numpy as np  # noqa: E402

from benchmarks import _recording_cost as recording_cost  # noqa: E402
from benchmarks._http import (  # noqa: E402
    SEQUENTIAL_REQUESTS,
    SEQUENTIAL_WARMUP,
    WRK_CONNECTIONS,
    WRK_SECONDS,
    WRK_THREADS,
    Endpoint,
    Server,
    coalescing,
    sequential,
    wrk,
)
from benchmarks._report import Figure, write_results  # noqa: E402

WINDOW_BARS = 300
COLD_STARTS = 3
ROUNDS = int(os.environ.get("MLOPS_BENCH_ROUNDS", "5"))
NOT_RECORDING = "predict_direction, not recording"
COLD_START_TARGET_S = 10.0
THROUGHPUT_TARGET = 0.80
LATENCY_TARGET = 1.5


# models and the request ------------------------------------------------------------------------------------
def production_models() -> dict[str, str]:
    """Quick models trained, promoted and named in a manifest (reused when MLOPS_BENCH_HOME already has models of
    the current feature code and card version, retrained when either has changed since or the forest was stored
    without the flat nodes the service predicts from: serving it would then import scikit-learn and time that)."""
    tags = current_models(MANIFEST)
    if tags is not None:
        import bentoml

        from bentos.forest_model import CUSTOM_OBJECT

        if CUSTOM_OBJECT in bentoml.models.get(tags["return_random_forest"]).custom_objects:
            return tags
    if MANIFEST.is_file():
        print("the stored models predate the current feature code, card or forest format: retraining", flush=True)
    from bentos.production import write_manifest
    from data.pull import pull
    from data.settings import DataSettings
    from data.snapshots import SnapshotStore
    from data.sources import EmbeddedSource
    from training.config import TrainingConfig
    from training.registry.promotion import Registry
    from training.run import train

    store = SnapshotStore(DataSettings().snapshots)
    info, _ = pull(EmbeddedSource(), store)
    started = time.perf_counter()
    result = train(info.id, config=TrainingConfig.quick(), store=store, reports_root=WORK / "reports")
    assert result.ok, result.failures
    print(f"trained six quick models in {time.perf_counter() - started:.0f} s", flush=True)
    registry = Registry()
    registry.promote([r.tag for r in result.results], reason="service benchmark")
    tags = registry.production()
    write_manifest(MANIFEST, tags)
    return tags


def window() -> dict[str, list[Any]]:
    """The last 300 daily bars of the S&P 500 in the embedded data, as a request holds them."""
    from data.sources import EmbeddedSource

    frame = EmbeddedSource(symbols=("^GSPC",)).fetch().tail(WINDOW_BARS)
    return {
        "date": [str(d.date()) for d in frame["date"]],
        **{c: [float(x) for x in frame[c]] for c in ("open", "high", "low", "close", "volume")},
    }


def in_process(body: bytes) -> tuple[list[Figure], dict[str, float]]:
    """Where a predict_direction request's time goes inside the worker, without HTTP: figures and medians (ms)."""
    from benchmarks._report import time_calls
    from bentos.inputs import bars_of, latest_features
    from bentos.schemas import BarWindow
    from bentos.service import SETTINGS, MarketModels
    from features import DEFAULT_SPEC

    service = MarketModels()
    loop = asyncio.new_event_loop()
    bars_json = json.dumps(json.loads(body)["bars"])
    parsed = BarWindow.model_validate_json(bars_json)
    bars = bars_of(parsed, SETTINGS.max_bars)
    features = latest_features(bars)
    answer = loop.run_until_complete(service.predict_direction(parsed))

    async def gathered(n: int) -> list[Any]:
        return list(await asyncio.gather(*(service.predict_direction(parsed) for _ in range(n))))

    def concurrently(n: int) -> Any:
        return loop.run_until_complete(gathered(n))

    steps = {
        "parse JSON into BarWindow (pydantic)": lambda: BarWindow.model_validate_json(bars_json),
        "bars_of: BarWindow -> validated Bars": lambda: bars_of(parsed, SETTINGS.max_bars),
        "features of the last row": lambda: latest_features(bars),
        f"features of the last row of {WRK_CONNECTIONS} windows in one pass": lambda: (
            DEFAULT_SPEC.compute_latest_stacked([bars] * WRK_CONNECTIONS)
        ),
        "direction runner predict (1 row)": lambda: service.direction.predict(features),
        "predict_direction(BarWindow), whole method": lambda: loop.run_until_complete(
            service.predict_direction(parsed)
        ),
        f"predict_direction, {WRK_CONNECTIONS} concurrent calls (one feature pass)": lambda: concurrently(
            WRK_CONNECTIONS
        ),
        "serialise DirectionPrediction to JSON": lambda: answer.model_dump_json(),
        "predict_all(BarWindow), whole method": lambda: service.predict_all(parsed),
    }
    figures, medians = [], {}
    for what, call in steps.items():
        medians[what] = float(np.median(time_calls(call, repeats=300, warmup=30)))
        median = round(medians[what], 3)
        figures.append(Figure(f"in process: {what}", f"{median:.3f} ms", median, "ms"))
    loop.close()
    return figures, medians


def baseline_tree(ref: str) -> Path:
    """``bentos/`` as of git ``ref``, in a directory of its own (``features/`` comes from this tree)."""
    destination = WORK / f"baseline-{re.sub(r'[^A-Za-z0-9_.-]', '_', ref)}"
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "bentos"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)
    return destination


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    production_models()
    bars = window()
    bars_body = json.dumps({"bars": bars}).encode()
    named_body = json.dumps({"bars": bars, "symbol": "^GSPC"}).encode()
    forecast_body = json.dumps({"symbol": "^GSPC", "periods": 10, "bars": bars}).encode()

    echo, models = Server("benchmarks.echo_service:Echo"), Server("bentos.service:MarketModels")
    servers = {"echo": echo, "models": models}
    baseline_ref = os.environ.get("MLOPS_BENCH_BASELINE")  # e.g. HEAD: the committed service, served alongside
    if baseline_ref:
        servers["baseline"] = Server("bentos.service:MarketModels", cwd=baseline_tree(baseline_ref))
    # the same two services with their worker pinned to one core (MLOPS_WORKER_CPUS), when there is a choice
    allowed = sorted(os.sched_getaffinity(0))
    pin = {"MLOPS_WORKER_CPUS": str(allowed[-1])} if len(allowed) > 1 else None
    pinned = (
        {"echo pinned": Server(echo.target, env=pin), "models pinned": Server(models.target, env=pin)} if pin else {}
    )
    # the service again with nothing recorded (bentos/recording.py): what recording every answer costs
    pinned["models not recording"] = Server(models.target, env={"MLOPS_RECORD_ANSWERS": "false"})
    cold: dict[str, list[float]] = {key: [] for key in servers}
    load_before = os.getloadavg()
    try:
        for attempt in range(COLD_STARTS):
            for key, server in servers.items():
                cold[key].append(server.start())
                print(f"cold start {key}: {server.startup_seconds:.2f} s", flush=True)
                if attempt < COLD_STARTS - 1:
                    server.stop()
        for server in pinned.values():
            server.start()
        workers = {key: s.worker_pids() for key, s in {**servers, **pinned}.items()}
        # in this order in every round: each predict_direction runs right after the echo it is compared with
        endpoints = [
            Endpoint("echo", echo, "/echo", bars_body),
            Endpoint("predict_direction", models, "/predict_direction", bars_body),
            Endpoint(NOT_RECORDING, pinned["models not recording"], "/predict_direction", bars_body),
        ]
        if baseline_ref:
            endpoints.append(
                Endpoint(f"predict_direction @ {baseline_ref}", servers["baseline"], "/predict_direction", bars_body)
            )
        endpoints += [
            Endpoint("echo_sync", echo, "/echo_sync", bars_body),
            Endpoint("predict_all", models, "/predict_all", bars_body, floor="echo_sync"),
            Endpoint("forecast_price", models, "/forecast_price", forecast_body, floor="echo_sync"),
        ]
        if pin:
            endpoints += [
                Endpoint("echo, pinned", pinned["echo pinned"], "/echo", bars_body),
                Endpoint(
                    "predict_direction, pinned",
                    pinned["models pinned"],
                    "/predict_direction",
                    bars_body,
                    floor="echo, pinned",
                ),
            ]
        latency: dict[str, tuple[float, float]] = {}
        for label, (p50, p99, answer) in sequential(endpoints).items():
            latency[label] = (p50, p99)
            print(f"sequential {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)
            if label == "predict_direction":
                assert 0.0 < answer["probability_up"] < 1.0 and answer["as_of"] == bars["date"][-1], answer
        rates: dict[str, list[float]] = {e.label: [] for e in endpoints}
        with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scripts:
            for round_ in range(ROUNDS):
                for endpoint in endpoints:
                    rates[endpoint.label].append(wrk(endpoint, Path(scripts)))
                    print(f"wrk round {round_ + 1} {endpoint.label}: {rates[endpoint.label][-1]:.0f} req/s", flush=True)
        feature_passes = coalescing(models)
    finally:
        for server in [*servers.values(), *pinned.values()]:
            server.stop()
    # what recording costs, and each of its parts, on servers of its own (benchmarks/_recording_cost.py)
    recording = recording_cost.measure(models.target, bars_body, named_body)
    load_after = os.getloadavg()

    figures = []
    for key, seconds in cold.items():
        median = round(statistics.median(seconds), 1)
        figures.append(
            Figure(
                f"cold start, {key} (launch to /readyz 200, median of {COLD_STARTS})",
                f"{median:.1f} s ({', '.join(f'{v:.1f}' for v in seconds)})",
                median,
                "s",
                "-" if key == "echo" else f"< {COLD_START_TARGET_S:.0f} s",
                "cold_start" if key == "models" else None,
            )
        )
    p50_keys = {"echo": "echo_p50", "predict_direction": "direction_p50"}
    for label, (p50, p99) in latency.items():
        p50, p99 = round(p50, 2), round(p99, 2)
        what = f"sequential p50 / p99, {label}"
        figures.append(Figure(what, f"{p50:.2f} / {p99:.2f} ms", p50, "ms", key=p50_keys.get(label)))
    for e in endpoints:
        if e.label.startswith("predict_direction"):
            ratio = round(latency[e.label][0] / latency[e.floor][0], 2)
            figures.append(
                Figure(
                    f"sequential p50, {e.label} / {e.floor}",
                    f"{ratio:.2f}x",
                    ratio,
                    "x",
                    f"<= {LATENCY_TARGET}x",
                    "p50_ratio" if e.label == "predict_direction" else None,
                )
            )
    for label, values in rates.items():
        median = round(statistics.median(values))
        figures.append(
            Figure(
                f"throughput, {label} (wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s, median of {ROUNDS})",
                f"{median} req/s ({', '.join(f'{v:.0f}' for v in values)})",
                median,
                "req/s",
                key="echo_throughput" if label == "echo" else None,
            )
        )
    for e in endpoints:
        if e.label.startswith("echo"):
            continue
        share = round(100 * statistics.median(x / f for x, f in zip(rates[e.label], rates[e.floor], strict=True)))
        figures.append(
            Figure(
                f"throughput, {e.label} / {e.floor} (median of per-round ratios)",
                f"{share}%",
                share,
                "%",
                f">= {THROUGHPUT_TARGET:.0%}" if e.label.startswith("predict_direction") else "-",
                {"predict_direction": "throughput_share", NOT_RECORDING: "throughput_share_not_recording"}.get(e.label),
            )
        )
    figures += recording_cost.figures(recording)
    passes, windows_per_pass = feature_passes
    figures += [
        Figure("feature computations of the one-window methods (all rounds)", f"{passes:.0f}", round(passes)),
        Figure(
            "windows per feature computation of the one-window methods",
            f"{windows_per_pass:.2f} on average",
            round(windows_per_pass, 2),
            key="windows_per_pass",
        ),
    ]
    process_figures, medians = in_process(bars_body)
    figures += process_figures
    validation, features = medians["bars_of: BarWindow -> validated Bars"], medians["features of the last row"]
    method = medians["predict_direction(BarWindow), whole method"]
    floor_ms = 1e3 / statistics.median(rates["echo"])
    notes = (
        f"One worker each ({workers}), on 127.0.0.1; wrk takes one of the two cores. Request: the last "
        f"{WINDOW_BARS} S&P 500 bars of the embedded data as JSON columns ({len(bars_body) / 1024:.1f} KiB; "
        "forecast_price adds symbol and periods=10). The echo (`benchmarks/echo_service.py`) has the service's "
        "BentoML config, HTTP guards (`bentos.security.guard_http`) and request/response schemas and returns a "
        "constant, so it is the floor BentoML and "
        "pydantic set for this payload; `echo` is a coroutine like `predict_direction` (BentoML runs both on the "
        "worker's event loop), `echo_sync` the same as a plain `def` like `predict_all` and `forecast_price` "
        "(BentoML's thread pool), and each is compared with the echo of its own kind. "
        + (f"`baseline` is `bentos/` as of {baseline_ref}, served from a copy. " if baseline_ref else "")
        + (
            f"`pinned`: both services again with `MLOPS_WORKER_CPUS={pin['MLOPS_WORKER_CPUS']}`, their worker "
            "process on one core. "
            if pin
            else ""
        )
        + f"`{NOT_RECORDING}`: the service with `MLOPS_RECORD_ANSWERS=false`; every other server records each answer "
        "(bentoml.monitor, a JSON line a model answer). `recording cost`: four more servers, recording and not and "
        "each of recording's two parts (`benchmarks/recording_parts.py`: the rows built and not written; pre-built "
        f"rows written), serving predict_direction alone, {recording_cost.ROUNDS} wrk rounds each in turn (workers "
        f"{recording.workers}; `benchmarks/_recording_cost.py`). "
        + "Models: quick-mode training of all six on the embedded data. Sequential: "
        f"{SEQUENTIAL_REQUESTS} requests per endpoint after {SEQUENTIAL_WARMUP} warm-up, one keep-alive connection "
        "each, endpoints taking turns request by request; wrk rounds also take turns. "
        f"Load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after: other work on this shared "
        "2-core VM moves every figure by up to ~30 % between runs, the ratios less. "
        f"What predict_direction adds to the echo is its method: {method:.2f} ms in process, of which OHLCV "
        f"validation {validation:.2f} ms and the last row's features {features:.2f} ms "
        f"({(validation + features) / method:.0%}, both in `features/`). Under load the echo costs "
        f"{floor_ms:.1f} ms of the worker's time a request, so 80 % of its throughput leaves "
        f"{floor_ms / THROUGHPUT_TARGET - floor_ms:.2f} ms for the method, and in the server it costs more than in "
        "a hot loop (two threads, colder caches)."
    )
    path = write_results("service", ".venv/bin/python benchmarks/bench_service.py", figures, notes)
    print(path.read_text())
    if "MLOPS_BENCH_HOME" not in os.environ:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
