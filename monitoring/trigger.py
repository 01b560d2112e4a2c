"""Retraining on evidence: when an alert rule holds for a production model, run the retrain deployment with the
evidence as its ``reason``, at most once per configured period.

The run is created through Prefect's API (``prefect.deployments.run_deployment`` with ``timeout=0``: created, not
waited for); the deployment serving process (``mlops retrain serve``) executes it, and its summary says what
triggered it. The time of the last successful trigger is kept in ``triggers.json`` beside the monitor's status, so
the period holds across runs; a trigger that fails (no Prefect API, no such deployment) is reported and does not
count, so the next monitor run tries again.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

STATE_FILE = "triggers.json"


def maybe_trigger(alerts: list[str], deployment: str, period_hours: float, enabled: bool, state_dir: Path,
                  now: datetime) -> dict[str, Any]:  # fmt: skip
    """Trigger ``deployment`` for ``alerts`` unless there are none, triggering is off or the period has not passed;
    what happened, with the reason, as a dict."""
    if not alerts:
        return {"triggered": False, "why": "no alert rule holds"}
    reason = "monitor: " + "; ".join(alerts)
    if not enabled:
        return {"triggered": False, "why": "triggering is off (MLOPS_MONITOR_TRIGGER_RETRAIN=false)", "reason": reason}
    path = state_dir / STATE_FILE
    last = _last(path)
    if last is not None and now - last < timedelta(hours=period_hours):
        after = (last + timedelta(hours=period_hours)).isoformat(timespec="seconds")
        return {"triggered": False, "why": f"rate limit: last triggered {last.isoformat(timespec='seconds')}, "
                f"next allowed from {after}", "reason": reason}  # fmt: skip
    try:
        flow_run_id = _run(deployment, reason)
    except Exception as error:  # no API, no deployment: reported, retried at the next monitor run
        return {"triggered": False, "why": f"{deployment} could not be run: {type(error).__name__}: {error}",
                "reason": reason}  # fmt: skip
    _save(path, {"last_triggered_at": now.isoformat(timespec="seconds"), "deployment": deployment, "reason": reason,
                 "flow_run_id": flow_run_id})  # fmt: skip
    return {"triggered": True, "deployment": deployment, "flow_run_id": flow_run_id, "reason": reason}


def _run(deployment: str, reason: str) -> str:
    from prefect.deployments import run_deployment

    import training.flows.retrain  # noqa: F401 - Prefect's quiet, offline defaults before Prefect is imported

    flow_run = run_deployment(deployment, parameters={"reason": reason}, timeout=0)
    return str(flow_run.id)  # type: ignore[union-attr]


def _last(path: Path) -> datetime | None:
    try:
        return datetime.fromisoformat(json.loads(path.read_text())["last_triggered_at"])
    except (OSError, ValueError, KeyError):
        return None


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    os.replace(temporary, path)
