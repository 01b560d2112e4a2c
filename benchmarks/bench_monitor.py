"""Benchmark of the live loop's daily job (issue 16): what recording costs an answer in process, how fast the
prediction store ingests, and how long a monitor run takes, on a replay of real data.

The models are trained as they would have been at the end of 2014: quick mode on a snapshot of the embedded
indices cut at 2014-12-31 (written as CSV, which keeps every float bit for bit), from 2003 with four walk-forward
test years, and promoted. The replay is what they would have answered afterwards, out of sample: the service (in
process, the class ``bentoml serve`` runs) answers one window a day of both indices over 2015-2018 with
``predict_all`` and a 5-day ``forecast_price``, symbols named; the monitor then ingests the recorded answers into
SQLite, joins them with the bars of the whole embedded snapshot (pulled after the training), scores, computes drift
and writes its report. The report's first plot is kept as ``results/monitor_report.png`` for the README.

Run: ``.venv/bin/python benchmarks/bench_monitor.py``; it uses temporary stores (``MLOPS_BENCH_MONITOR_HOME`` keeps
and reuses them), never the user's.
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

from benchmarks._stores import bench_home, current_models  # noqa: E402 - before the project: its stores

WORK = bench_home("MLOPS_BENCH_MONITOR_HOME", "mlops-bench-monitor-")
MANIFEST = WORK / "production.json"

from benchmarks._report import RESULTS, Figure, write_results  # noqa: E402

LOGS = WORK / "monitor-logs"
#: the models' last bar: everything replayed is after it
CUT = "2014-12-31"
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


def trained_through_cut() -> dict[str, str]:
    """Quick models trained on the bars up to ``CUT`` (from 2003, four test years), promoted; their tags. Reused
    when the manifest names models of the current feature code and card version."""
    from bentos.production import write_manifest
    from data.pull import pull
    from data.settings import DataSettings
    from data.snapshots import SnapshotStore
    from data.sources import CsvSource, EmbeddedSource
    from training.config import TrainingConfig
    from training.registry.promotion import Registry
    from training.run import train

    store = SnapshotStore(DataSettings().snapshots)
    reused = current_models(MANIFEST)
    if reused is not None:
        return reused
    bars = EmbeddedSource().fetch()
    cut = WORK / "embedded-through-cut.csv"
    bars[bars["date"] <= CUT].to_csv(cut, index=False)
    info, _ = pull(CsvSource(cut), store)
    config = TrainingConfig.quick(first_date="2003-01-01", test_years=4)
    result = train(info.id, config=config, store=store, reports_root=WORK / "reports")
    assert result.ok, result.failures
    registry = Registry()
    registry.promote([r.tag for r in result.results], reason="monitor benchmark: trained through " + CUT)
    tags = registry.production()
    write_manifest(MANIFEST, tags)
    pull(EmbeddedSource(), store)  # the whole series, newer: where the monitor finds what happened after
    return tags


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


def drift_over_replay(daily: Any, persist_days: int) -> str:
    """How often the replay's daily PSI would have acted: the prediction's days at alert and the spells where an
    alert persisted ``persist_days`` days (the rule), for the prediction and for the features."""
    spells: dict[str, int] = {}
    for name, frame in daily.groupby("name", sort=False):
        run = 0
        for level in frame.sort_values("as_of")["level"]:
            run = run + 1 if level == "alert" else 0
            spells[name] = spells.get(name, 0) + (run == persist_days)
    prediction = daily[daily["name"] == "prediction"]
    share = 100 * (prediction["level"] == "alert").mean() if len(prediction) else float("nan")
    features = {n: k for n, k in spells.items() if n != "prediction" and k}
    return (f"prediction at alert on {share:.0f} % of {len(prediction)} days, {spells.get('prediction', 0)} persistent "
            f"spell(s); features with persistent spells: {features or 'none'}")  # fmt: skip


def main() -> None:
    import importlib

    import bentos.recording as recording
    from bentos.settings import ServiceSettings
    from data.settings import DataSettings
    from data.snapshots import SnapshotStore
    from monitoring.flow import run_and_publish
    from monitoring.job import MonitorSettings
    from monitoring.store import PredictionStore

    tags = trained_through_cut()
    shutil.rmtree(LOGS, ignore_errors=True)
    os.environ["MLOPS_MONITOR_LOG_PATH"] = str(LOGS)
    assert ServiceSettings().monitor_logs == LOGS
    service = Blocking(importlib.import_module("bentos.service").MarketModels())
    store = SnapshotStore(DataSettings().snapshots)
    info = store.latest()
    frames = {s: store.load(info.id, symbols=[s]).sort_values("date").reset_index(drop=True) for s in info.symbols}

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
    # recording alone, in process: one predict_direction answer's rows written through bentoml.monitor (after the
    # monitor run: these answers are not the replay's, and must not be scored with it)
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

    page = Path(where["report"]).read_text()
    first = re.search(r'<img src="data:image/png;base64,([^"]+)"', page)
    if first:
        (RESULTS / "monitor_report.png").write_bytes(base64.b64decode(first.group(1)))
    statements = {m: s.score.statement for m, s in result.models.items() if s.score is not None}
    signals = {m: s.score.signal for m, s in result.models.items() if s.score is not None and s.score.signal}
    volatility = signals.get("volatility_lightgbm", {})

    # where traffic is thin: each model's drift over the latest bars of its trained symbols instead
    from monitoring.job import row_predictor
    from monitoring.live_drift import bars_drift
    from monitoring.outcomes import SeriesFinder

    finder = SeriesFinder(store)
    started = time.perf_counter()
    thin = {m: bars_drift(s.card, s.version, finder, settings.rules(), row_predictor(m, s.version))
            for m, s in result.models.items() if s.card is not None}  # fmt: skip
    thin_s = time.perf_counter() - started

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
        *(Figure(f"volatility_lightgbm's rank IC over the replay, {which}", _ic(ic), round(ic["rank"]["mean"], 3),
                 key=f"volatility_rank_ic_{which.replace('-', '_')}")
          for which, ic in (("live", volatility.get("model")), ("walk-forward", volatility.get("walk_forward")))
          if ic is not None),
        Figure(f"thin traffic: drift of {len(thin)} models over their trained symbols' latest bars, no served rows",
               f"{thin_s:.1f} s", round(thin_s, 2), "s", key="thin_drift_s"),
    ]  # fmt: skip
    notes = f"Verdicts of this run (models trained on bars up to {CUT}, {YEARS[0][:4]}-{YEARS[1][:4]} replayed out of "
    notes += "sample):\n\n" + "\n".join(f"- {m}: {s}" for m, s in statements.items())
    notes += "\n\nSignal of the served answers (rank IC, its 95 % HAC interval; live, then the walk-forward):\n\n"
    notes += "\n".join(f"- {m}: {_ic(s['model'])} live, {_ic(s.get('walk_forward'))} walk-forward"
                       for m, s in signals.items())  # fmt: skip
    notes += f"\n\nAlerts: {result.alerts or 'none'}\n\nDrift over the replay (rule: {settings.persist_days} days):\n\n"
    drifted = {m: s.drift.daily for m, s in result.models.items() if s.drift is not None and not s.drift.daily.empty}
    notes += "\n".join(f"- {m}: {drift_over_replay(d, settings.persist_days)}" for m, d in drifted.items())
    notes += "\n\nThin traffic (no served rows), the same PSI over the latest bars of the trained symbols:\n\n"
    notes += "\n".join(f"- {m}: persistent alerts {d.persistent or 'none'}; latest "
                       + ", ".join(f"{r['name']} {r['psi']:.2f} (alert at {r['alert_at']:.2f})"
                                   for r in d.latest().head(3).to_dict("records"))
                       for m, d in thin.items())  # fmt: skip
    write_results("monitor", ".venv/bin/python benchmarks/bench_monitor.py", figures, notes)
    for figure in figures:
        print(f"{figure.what}: {figure.shown}")


def _ic(ic: dict[str, Any] | None) -> str:
    rank = (ic or {}).get("rank") or {}
    if rank.get("mean") is None:
        return "-"
    return f"{rank['mean']:.3f} [{rank['ci_low']:.3f}, {rank['ci_high']:.3f}] ({rank.get('evidence', '')})"


if __name__ == "__main__":
    main()
