"""The monitor job: ingest what the service recorded, join it with what happened, score it, watch drift, and say
whether the evidence calls for a retrain (``mlops monitor run``, the Prefect deployment ``monitor/daily``).

One run:

1. ingests the service's recorded answers into the prediction store (``monitoring/store.py``);
2. joins every stored answer with its realised outcome from the newest snapshots (``monitoring/outcomes.py``);
3. scores each served version and, in shadow, each newer unpromoted version on the same recorded (symbol, date)
   pairs (``monitoring/scorecard.py``, ``monitoring/shadow.py``);
4. computes the daily PSI of every feature and of each production model's predictions (``monitoring/live_drift.py``)
   over the served rows, or where they are too few for any PSI or end too long before the stored bars, over the
   latest bars of the trained symbols;
5. applies the alert rules: a drift alert that has persisted ``persist_days`` days, or a live metric worse than its
   best baseline on the last ``below_baseline_days`` days; ``monitoring/trigger.py`` acts on them;
6. writes ``status.json``, the HTML report and the Prometheus metrics (``monitoring/report.py``, ``metrics.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from data.settings import DataSettings
from data.snapshots import SnapshotStore
from features.catalog import model_kind
from monitoring import drift
from monitoring.live_drift import DriftRules, ModelDrift, bars_drift, model_drift, stale
from monitoring.outcomes import OUTCOME_COLUMNS, PENDING, REALISED, SeriesFinder, outcomes
from monitoring.scorecard import WINDOW_DAYS, Score, scorecard
from monitoring.store import IngestReport, PredictionStore
from training.registry.card import ModelCard

STATUS_FILE = "status.json"


class MonitorSettings(BaseSettings):
    """The monitor's rules and places, read from the environment (prefix ``MLOPS_MONITOR_``)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_MONITOR_", extra="ignore")

    window_days: int = Field(WINDOW_DAYS, ge=5, description="As-of dates in the scorecard's rolling window.")
    drift_warn: float = Field(drift.WARN, gt=0, description="PSI at which a feature or prediction warns.")
    drift_alert: float = Field(drift.ALERT, gt=0, description="PSI at which it alerts.")
    drift_min_rows: int = Field(100, ge=10, description="Values a daily PSI needs (taken over recent days).")
    drift_min_days: int = Field(21, ge=1, description="As-of days a daily PSI is taken over, at least.")
    persist_days: int = Field(5, ge=1, description="Days in a row a drift alert must hold before it acts.")
    drift_stale_sessions: int = Field(10, ge=1, description="Sessions the served rows may lag the stored bars before "
                                      "drift is taken over the latest bars instead.")  # fmt: skip
    below_baseline_days: int = Field(20, ge=1, description="Days in a row a live metric trails its baseline to act.")
    retrain_period_hours: float = Field(168.0, ge=0, description="At most one triggered retrain per period.")
    retrain_deployment: str = Field("retrain/daily", description="The Prefect deployment a trigger runs.")
    trigger_retrain: bool = Field(True, description="Run the retrain deployment when an alert rule holds.")
    output_dir: Path | None = Field(None, description="Status, report, metrics; default <MLOPS_HOME>/data/monitoring.")

    def rules(self) -> DriftRules:
        return DriftRules(
            self.drift_warn, self.drift_alert, self.drift_min_rows, self.drift_min_days, self.persist_days
        )

    def output(self) -> Path:
        return self.output_dir or DataSettings().home / "data" / "monitoring"


@dataclass
class ModelStatus:
    """What the monitor knows of one model: its production version's scores and drift, its challengers' scores."""

    model: str
    version: str
    card: ModelCard | None
    score: Score | None = None
    drift: ModelDrift | None = None
    challengers: list[Score] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    pending: int = 0
    unscorable: dict[str, int] = field(default_factory=dict)

    def days_since_training(self, today: str) -> int | None:
        if self.card is None:
            return None
        return (pd.Timestamp(today) - pd.Timestamp(self.card.created_at[:10])).days

    def last_realised(self) -> str:
        return self.score.last if self.score is not None else ""


@dataclass
class MonitorRun:
    """One run's results (``status.json`` is :meth:`to_dict`)."""

    at: str
    ingest: IngestReport
    rows: int
    models: dict[str, ModelStatus]
    frame: pd.DataFrame = field(repr=False)
    trigger: dict[str, Any] | None = None
    rules: DriftRules = field(default_factory=DriftRules)

    @property
    def alerts(self) -> list[str]:
        return [f"{m}: {a}" for m, status in self.models.items() for a in status.alerts]

    def to_dict(self) -> dict[str, Any]:
        today = self.at[:10]
        models = {}
        for name, s in self.models.items():
            models[name] = {
                "version": s.version,
                "score": None if s.score is None else s.score.to_dict(),
                "drift": None if s.drift is None else s.drift.to_dict(),
                "challengers": [c.to_dict() for c in s.challengers],
                "alerts": s.alerts,
                "pending": s.pending,
                "unscorable": s.unscorable,
                "days_since_training": s.days_since_training(today),
                "last_realised": s.last_realised(),
            }
        return {"at": self.at, "rows": self.rows, "ingest": self.ingest.__dict__, "models": models,
                "alerts": self.alerts, "trigger": self.trigger}  # fmt: skip


def load_card(model: str, version: str) -> ModelCard | None:
    from training.registry.store import get_model

    try:
        return get_model(f"{model}:{version}").card_or_none()
    except Exception:  # not in this store (pruned, or served from elsewhere): scored without a card
        return None


def run(
    settings: MonitorSettings | None = None,
    logs: Path | None = None,
    database: str | None = None,
    snapshots: SnapshotStore | None = None,
    production: dict[str, str] | None = None,
    now: datetime | None = None,
) -> MonitorRun:
    """One monitor run (see the module's docstring); ``production``: model -> tag (default: what the service
    serves)."""
    from bentos.settings import ServiceSettings
    from monitoring.shadow import challengers_of, shadow_scores

    settings = settings or MonitorSettings()
    store = PredictionStore(database)
    report = store.ingest(logs or ServiceSettings().monitor_logs)
    rows = store.rows()
    snapshots = snapshots or SnapshotStore(DataSettings().snapshots)
    frame = outcomes(rows, snapshots) if rows else pd.DataFrame(columns=["model", "version", *OUTCOME_COLUMNS])
    finder = SeriesFinder(snapshots)
    tags = production if production is not None else _production()
    at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    models: dict[str, ModelStatus] = {}
    for model, tag in sorted(tags.items()):
        version = tag.partition(":")[2]
        card = load_card(model, version)
        status = ModelStatus(model, version, card)
        served = frame[(frame["model"] == model) & (frame["version"] == version)] if len(frame) else frame
        status.pending = int((served["status"] == PENDING).sum()) if len(served) else 0
        if len(served):
            unscorable = served[~served["status"].isin([REALISED, PENDING])]
            status.unscorable = {str(k): int(v) for k, v in unscorable["reason"].value_counts().items()}
        if card is not None:
            (status.score,) = scorecard(frame, {(model, version): card}, finder, settings.window_days)
            status.drift = model_drift(served, card, version, settings.rules()) if len(served) else None
            why = f"served rows too few ({len(served)})"
            if status.drift is not None and not status.drift.daily.empty:
                why = stale(status.drift, served, finder, settings.drift_stale_sessions)
            if why:  # thin or stopped traffic: the trained symbols' latest bars
                status.drift = bars_drift(card, version, finder, settings.rules(), row_predictor(model, version), why)
            challengers = challengers_of(model, version, card)
            status.challengers = shadow_scores(frame, model, version, challengers, finder, settings.window_days)
        status.alerts = alerts(status, settings)
        models[model] = status
    return MonitorRun(at, report, len(rows), models, frame, rules=settings.rules())


def alerts(status: ModelStatus, settings: MonitorSettings) -> list[str]:
    """The alert rules that hold for a production model, each one sentence."""
    found = []
    # the features' and the predictions' drift acts, but where the card cannot calibrate it (ModelDrift.reported_only)
    acting = status.drift.acting if status.drift is not None else []
    if acting:
        found.append(f"drift alert (PSI above its alert level) for {settings.persist_days}+ days: "
                     f"{', '.join(acting)}")  # fmt: skip
    score = status.score
    if score is not None and score.worse_than_baseline_days >= settings.below_baseline_days:
        found.append(f"live {score.metric} worse than its best baseline on the last {score.worse_than_baseline_days}"
                     f" days (rule: {settings.below_baseline_days})")  # fmt: skip
    return found


def row_predictor(model: str, version: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The served runner's ``predict`` of a per-row model (feature rows in, answers out); None for Prophet and the
    regime model (their answers need a fit on each window) or a version not in this model store."""
    import bentoml

    from bentos.runners import load_runner

    if model_kind(model).task in ("price", "regime"):
        return None
    try:
        runner = load_runner(model, bentoml.models.get(f"{model}:{version}"))
    except Exception:  # not in this store, or not servable here: the features' drift is still taken
        return None
    return runner.predict  # type: ignore[attr-defined]


def _production() -> dict[str, str]:
    """What the service serves (``bentos/production.py``: ``MLOPS_PRODUCTION_FILE``'s manifest, else the registry's
    production), as batch scoring reads it."""
    from bentos.production import production_tags
    from bentos.settings import ServiceSettings

    return production_tags(ServiceSettings().production_file)
