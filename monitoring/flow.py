"""``monitor``: the monitor job as a Prefect flow, served as the deployment ``monitor/daily`` after the US close.

``mlops monitor run`` runs it once; ``mlops monitor serve`` serves the deployment on its schedule (cli/monitor.py).
Each run publishes the status table and the alert rules as Prefect artifacts, beside the HTML report, ``status.json``
and the Prometheus metrics (``monitoring/job.py`` says what a run does).
"""

# No ``from __future__ import annotations``: a served deployment rebuilds the flow's parameters from its signature.
import training.flows.retrain  # noqa: F401, I001 - Prefect's quiet, offline defaults, set before Prefect is imported

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from monitoring.job import MonitorRun, MonitorSettings, run
from monitoring.live_drift import SERVED
from monitoring.metrics import publish
from monitoring.report import write_report
from monitoring.trigger import maybe_trigger

FLOW_NAME = "monitor"
DEPLOYMENT_NAME = "daily"
CRON = "30 22 * * 1-5"  # after the US close, and after the retrain deployment's 22:00 start


def run_and_publish(settings: MonitorSettings | None = None, logs: Path | None = None, database: str | None = None,
                    now: datetime | None = None, **kwargs: Any) -> tuple[MonitorRun, dict[str, str]]:  # fmt: skip
    """One monitor run, its retrain trigger, report and metrics; the run and where each went."""
    settings = settings or MonitorSettings()
    now = now or datetime.now(UTC)
    result = run(settings, logs=logs, database=database, now=now, **kwargs)
    output = settings.output()
    result.trigger = maybe_trigger(result.alerts, settings.retrain_deployment, settings.retrain_period_hours,
                                   settings.trigger_retrain, output, now)  # fmt: skip
    report = write_report(result, output / "report")
    return result, {"report": str(report), "status": str(report.parent / "status.json"),
                    "metrics": publish(result, output)}  # fmt: skip


def status_rows(status: dict[str, Any]) -> list[dict[str, str]]:
    """One row per model of a ``status.json``: live metric, best baseline, walk-forward band, live rank IC beside
    the walk-forward's, verdict, worst drifting features, days since training, last realised date."""
    rows = []
    for model, s in status["models"].items():
        score = s.get("score") or {}
        metric = score.get("metric", "")
        live = (score.get("live") or {}).get(metric)
        baselines = {k: v.get(metric) for k, v in (score.get("baselines") or {}).items()}
        band = score.get("band")
        drift = s.get("drift") or {}
        worst = [f"{r['name']} {r['psi']:.2f}/{r['alert_at']:.2f}" for r in (drift.get("latest") or [])[:3]]
        ic = ((score.get("signal") or {}).get("model") or {}).get("rank") or {}
        walked = ((score.get("signal") or {}).get("walk_forward") or {}).get("rank") or {}
        rows.append({
            "model": model,
            "version": s["version"],
            "metric": metric,
            "live": _fmt(live),
            "baseline": ", ".join(f"{k} {_fmt(v)}" for k, v in baselines.items()),
            "walk-forward": f"{_fmt(band[0])} .. {_fmt(band[1])}" if band else "",
            "rank IC (walk-forward)": f"{_fmt(ic.get('mean'))} ({_fmt(walked.get('mean'))})" if ic else "",
            "verdict": score.get("statement", ""),
            "drift (PSI/alert level)": ", ".join(worst) + ("" if drift.get("source", SERVED) == SERVED else " (bars)"),
            "days since training": str(s.get("days_since_training", "")),
            "last realised": s.get("last_realised", ""),
        })  # fmt: skip
    return rows


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else ""


def pull_first(source: str, tickers: list[str] | None, start: str | None = None, end: str | None = None) -> str:
    """Pull the newest bars as ``mlops retrain run`` would (same source options: the source, its tickers, the first
    and last dates); what happened, in a sentence. A failed pull does not stop the monitor: it scores on the
    snapshots already stored and says so (``mlops retrain run --use-cached-on-failure``'s fallback, always on)."""
    from data.pull import pull
    from data.settings import DataSettings
    from data.snapshots import SnapshotStore
    from training.flows.retrain import RetrainSettings
    from training.flows.tasks import make_source

    try:
        info, new = pull(make_source(source, tickers or RetrainSettings().tickers, start, end), SnapshotStore(
            DataSettings().snapshots))  # fmt: skip
    except Exception as error:  # the network, the provider: reported, and the stored snapshots are scored
        return f"the {source} pull failed ({type(error).__name__}: {error}); scored on the snapshots already stored"
    return f"pulled {source}: snapshot {info.id} ({'new' if new else 'unchanged'}), bars to {info.end}"


@flow(name=FLOW_NAME)
def monitor(
    trigger_retrain: bool = True,
    source: str | None = None,
    tickers: list[str] | None = None,
    start: str | None = None,
    end: str | None = None,
) -> dict[str, Any]:
    """Pull (when a ``source`` is named), ingest, score, watch drift, report, and trigger the retrain deployment
    when the evidence calls for it."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    settings = MonitorSettings()
    settings.trigger_retrain = settings.trigger_retrain and trigger_retrain
    pulled = pull_first(source, tickers, start, end) if source else "no pull asked for"
    get_run_logger().info(pulled)
    result, where = run_and_publish(settings)
    status = result.to_dict()
    create_table_artifact(status_rows(status), key="monitor-status", description="Live models against their cards")
    alerts = "\n".join(f"- {a}" for a in result.alerts) or "- none"
    trigger = result.trigger or {}
    acted = f"retrain triggered: {trigger['reason']}" if trigger.get("triggered") else f"no retrain: {trigger['why']}"
    create_markdown_artifact(f"# Monitor {result.at}\n\nAlert rules:\n{alerts}\n\n{acted}\n\nReport: {where['report']}",
                             key="monitor-alerts", description="Alert rules and what the monitor did")  # fmt: skip
    get_run_logger().info(f"{result.rows} recorded answers; {len(result.alerts)} alert rule(s); {acted}")
    return {"at": result.at, "pull": pulled, "alerts": result.alerts, "trigger": trigger, **where}


def monitor_deployment(name: str = DEPLOYMENT_NAME, cron: str = CRON) -> Any:
    """The flow as the deployment ``monitor/<name>`` on ``cron`` (loaded by module path when it runs)."""
    from prefect.types.entrypoint import EntrypointType

    what = "Ingest, score, drift, report, retrain on evidence (monitoring/)."
    return monitor.to_deployment(name=name, cron=cron, entrypoint_type=EntrypointType.MODULE_PATH, description=what)
