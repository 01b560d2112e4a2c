"""Benchmark of the live loop's daily job (issue 16): what recording costs an answer in process, how fast the
prediction store ingests, and how long a monitor run takes, on a replay of real data.

The replay: the service (in process, the class ``bentoml serve`` runs) answers one window a day of both embedded
indices over four years (2015-2018) with ``predict_all`` and a 5-day ``forecast_price``, symbols named; the monitor
then ingests the recorded answers into SQLite, joins them with the stored bars, scores, computes drift and writes its
report. The models are the quick models of ``bench_service.py`` (trained into its temporary store, reused with
``MLOPS_BENCH_HOME``). The report's first plot is kept as ``results/monitor_report.png`` for the README.

Run: ``.venv/bin/python benchmarks/bench_monitor.py``.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import os
import re
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._report import RESULTS, Figure, write_results  # noqa: E402
from benchmarks.bench_service import WORK, production_models  # noqa: E402 - sets the temporary stores first

LOGS = WORK / "monitor-logs"
YEARS = ("2015-01-01", "2018-12-31")
WINDOW_BARS = 300
RECORD_CALLS = 2_000


class Blocking:
    """The service with its coroutine methods run to completion (``predict_direction`` is one)."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.instance, name)

        def call(**kwargs: Any) -> Any:
            answer = method(**kwargs)
            return asyncio.run(answer) if inspect.isawaitable(answer) else answer

        return call


def replay(service: Any, frames: dict[str, Any]) -> int:
    """Answers of one window a day per symbol; how many answers."""
    from bentos.schemas import BarWindow

    answers = 0
    for symbol, frame in frames.items():
        dates = frame["date"]
        for end in frame.index[(dates >= YEARS[0]) & (dates <= YEARS[1])]:
            part = frame.iloc[end + 1 - WINDOW_BARS : end + 1]
            window = {"date": part["date"].dt.strftime("%Y-%m-%d").tolist()}
            window |= {c: part[c].tolist() for c in ("open", "high", "low", "close", "volume")}
            bars = BarWindow(**window)
            service.predict_all(bars=bars, symbol=symbol)
            service.forecast_price(symbol=symbol, periods=5, bars=bars)
            answers += 2
    return answers


def main() -> None:
    import importlib

    import bentos.recording as recording
    from bentos.settings import ServiceSettings
    from data.settings import DataSettings
    from data.snapshots import SnapshotStore
    from monitoring.flow import run_and_publish
    from monitoring.job import MonitorSettings
    from monitoring.store import PredictionStore

    tags = production_models()
    shutil.rmtree(LOGS, ignore_errors=True)
    os.environ["MLOPS_MONITOR_LOG_PATH"] = str(LOGS)
    assert ServiceSettings().monitor_logs == LOGS
    service = Blocking(importlib.import_module("bentos.service").MarketModels())
    store = SnapshotStore(DataSettings().snapshots)
    info = store.latest()
    frames = {s: store.load(info.id, symbols=[s]).sort_values("date").reset_index(drop=True) for s in info.symbols}

    # recording alone, in process: one predict_direction answer's rows written through bentoml.monitor
    from bentos.schemas import BarWindow, example_window

    bars = BarWindow(**example_window())
    answer = service.predict_direction(bars=bars)
    rows = recording.answer_rows("predict_direction", answer, [0.5] * 40, "^GSPC", "300:2017-10-01:" + "0" * 32)
    started = time.perf_counter()
    for _ in range(RECORD_CALLS):
        recording.write(recording.answer_rows("predict_direction", answer, [0.5] * 40, "^GSPC", rows[0]["window"]))
    record_us = (time.perf_counter() - started) / RECORD_CALLS * 1e6
    started = time.perf_counter()
    for _ in range(RECORD_CALLS):
        service.predict_direction(bars=bars)
    answer_ms = (time.perf_counter() - started) / RECORD_CALLS * 1e3

    started = time.perf_counter()
    answers = replay(service, frames)
    replay_s = time.perf_counter() - started

    output = WORK / "monitor-output"
    shutil.rmtree(output, ignore_errors=True)
    settings = MonitorSettings(output_dir=output, trigger_retrain=False)
    database = f"sqlite:///{output / 'store.sqlite'}"
    output.mkdir(parents=True)
    started = time.perf_counter()
    report = PredictionStore(database).ingest(LOGS)
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    result, where = run_and_publish(settings, database=database, snapshots=store, production=tags,
                                    now=datetime(2019, 1, 1, tzinfo=UTC))  # fmt: skip
    run_s = time.perf_counter() - started
    page = Path(where["report"]).read_text()
    first = re.search(r'<img src="data:image/png;base64,([^"]+)"', page)
    if first:
        (RESULTS / "monitor_report.png").write_bytes(base64.b64decode(first.group(1)))
    statements = {m: s.score.statement for m, s in result.models.items() if s.score is not None}

    figures = [
        Figure("recording one predict_direction answer in process (answer_rows + bentoml.monitor, default monitor)",
               f"{record_us:.0f} µs", round(record_us, 1), "µs", key="record_us"),
        Figure("a predict_direction answer in process, recording included", f"{answer_ms:.2f} ms", round(answer_ms, 3),
               "ms", key="answer_ms"),
        Figure(f"replay: {answers:,} answers (predict_all and a 5-day forecast a day per symbol, {YEARS[0][:4]}-"
               f"{YEARS[1][:4]}), in process", f"{replay_s:.0f} s", round(replay_s, 1), "s", key="replay_s"),
        Figure(f"ingest {report.new:,} recorded rows into SQLite", f"{report.new / ingest_s:,.0f} rows/s",
               round(report.new / ingest_s), "rows/s", key="ingest_rate"),
        Figure(f"monitor run over {result.rows:,} stored rows (outcomes, scorecard, shadow, drift, report, metrics)",
               f"{run_s:.1f} s", round(run_s, 1), "s", key="run_s"),
    ]  # fmt: skip
    notes = "Verdicts of this run (2015-2018 replayed, inside the quick models' training period: mechanics, not "
    notes += "skill):\n\n" + "\n".join(f"- {m}: {s}" for m, s in statements.items())
    notes += f"\n\nAlerts: {result.alerts or 'none'}"
    write_results("monitor", ".venv/bin/python benchmarks/bench_monitor.py", figures, notes)
    for figure in figures:
        print(f"{figure.what}: {figure.shown}")


if __name__ == "__main__":
    main()
