"""The monitor's figures as Prometheus metrics: pushed to a Pushgateway when ``MLOPS_PUSHGATEWAY_URL`` is set,
otherwise written for node_exporter's textfile collector (``<monitor output>/mlops_monitor.prom``).

A batch job's figures belong on a Pushgateway (Prometheus cannot scrape a job that has finished); the textfile is
the same exposition, for a machine that runs node_exporter instead. ``prometheus_client`` is BentoML's own.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

if TYPE_CHECKING:
    from monitoring.job import MonitorRun

JOB = "mlops_monitor"
TEXTFILE = "mlops_monitor.prom"
PUSHGATEWAY_VARIABLE = "MLOPS_PUSHGATEWAY_URL"


def registry_of(run: MonitorRun) -> CollectorRegistry:
    """Every figure of ``run`` as gauges of a fresh registry."""
    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"mlops_monitor_{name}", doc, labels, registry=registry)

    rows = gauge("recorded_answers", "Recorded answers in the prediction store")
    live = gauge("live_metric", "A production model's live primary metric", ("model", "version", "metric", "window"))
    base = gauge("baseline_metric", "Its best baseline's, same rows", ("model", "baseline", "metric", "window"))
    band = gauge("walk_forward_band", "The walk-forward folds' lowest and highest", ("model", "metric", "bound"))
    below = gauge("below_walk_forward", "1 when the rolling metric is outside the folds' range", ("model",))
    trailing = gauge("days_worse_than_baseline", "Latest days in a row the model trails its baseline", ("model",))
    psi = gauge("psi", "Latest daily PSI against the training reference", ("model", "name"))
    psi_alert = gauge("psi_alert_level", "The PSI at which that name alerts (calibrated)", ("model", "name"))
    ic = gauge("live_rank_ic", "Rank IC of the served answers, and the card's", ("model", "window"))
    persistent = gauge("drift_alerts_persistent", "Features or predictions whose drift alert persisted", ("model",))
    pending = gauge("pending_answers", "Recorded answers whose horizon has not passed", ("model",))
    alerts = gauge("alerts", "Alert rules holding")
    triggered = gauge("retrain_triggered", "1 when this run triggered a retrain")
    finished = gauge("last_run_timestamp_seconds", "When the monitor last ran")

    rows.set(run.rows)
    for model, status in run.models.items():
        pending.labels(model).set(status.pending)
        score = status.score
        if score is not None and score.live:
            _set(live.labels(model, status.version, score.metric, "since_served"), score.live.get(score.metric))
            for name, metrics in score.baselines.items():
                _set(base.labels(model, name, score.metric, "since_served"), metrics.get(score.metric))
            if score.rolling is not None and not score.rolling.empty:
                _set(live.labels(model, status.version, score.metric, "rolling"), score.rolling["model"].iloc[-1])
            below.labels(model).set(1 if score.below_band_since else 0)
            trailing.labels(model).set(score.worse_than_baseline_days)
        signal = (score.signal if score is not None else None) or {}
        for window, key in (("since_served", "model"), ("walk_forward", "walk_forward")):
            _set(ic.labels(model, window), ((signal.get(key) or {}).get("rank") or {}).get("mean"))
        if score is not None and score.band is not None:
            band.labels(model, score.metric, "low").set(score.band[0])
            band.labels(model, score.metric, "high").set(score.band[1])
        if status.drift is not None:
            for record in status.drift.latest().to_dict("records"):
                _set(psi.labels(model, record["name"]), record["psi"])
                _set(psi_alert.labels(model, record["name"]), record["alert_at"])
            persistent.labels(model).set(len(status.drift.persistent))
    alerts.set(len(run.alerts))
    triggered.set(1 if run.trigger and run.trigger.get("triggered") else 0)
    finished.set_to_current_time()
    return registry


def _set(gauge: Gauge, value: object) -> None:
    if isinstance(value, int | float) and math.isfinite(value):
        gauge.set(float(value))


def publish(run: MonitorRun, output: Path) -> str:
    """Push the run's metrics to ``MLOPS_PUSHGATEWAY_URL``, or write them as a textfile in ``output``; where."""
    registry = registry_of(run)
    url = os.environ.get(PUSHGATEWAY_VARIABLE)
    if url:
        push_to_gateway(url, job=JOB, registry=registry)
        return f"pushed to {url} (job {JOB})"
    output.mkdir(parents=True, exist_ok=True)
    path = output / TEXTFILE
    write_to_textfile(str(path), registry)
    return f"written to {path}"
