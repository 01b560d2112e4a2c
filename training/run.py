"""A training run: evaluate, fit, audit and save the chosen models on one snapshot, then write the report."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

from data.settings import DataSettings
from data.snapshots import SnapshotInfo, SnapshotStore
from features.catalog import MODEL_NAMES, model_kind
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.evaluation.audit import leakage_audit
from training.evaluation.walk_forward import Evaluation
from training.models.trainer import Fitted, Trainer
from training.registry.card import ModelCard, build_card
from training.registry.store import Stage


def trainer_class(name: str) -> type[Trainer]:
    """The trainer of model ``name``, imported only when that model is trained."""
    module, cls = model_kind(name).trainer.split(":")
    trainer: type[Trainer] = getattr(import_module(module), cls)
    return trainer


@dataclass
class ModelResult:
    name: str
    tag: str
    card: ModelCard
    evaluation: Evaluation
    fitted: Fitted
    evaluate_seconds: float
    fit_seconds: float


@dataclass
class TrainingRun:
    run_id: str
    snapshot: SnapshotInfo
    config: TrainingConfig
    results: list[ModelResult] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    report_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def tags(self) -> dict[str, str]:
        return {r.name: r.tag for r in self.results}


Progress = Callable[[str, str], None]


def train_one(name: str, panel: Panel, config: TrainingConfig) -> ModelResult:
    """Walk-forward evaluation, final fit on the whole snapshot, leakage audit, save with its card."""
    trainer = trainer_class(name)(config)
    started = time.perf_counter()
    evaluation = trainer.evaluate(panel)
    evaluated = time.perf_counter()
    fitted = trainer.fit(panel)
    finished = time.perf_counter()
    card = build_card(
        trainer=trainer,
        evaluation=evaluation,
        fitted=fitted,
        spec=panel.spec,
        snapshot=panel.snapshot,
        panel_dates=panel.dates,
        audit=leakage_audit(evaluation),
        training_seconds=finished - started,
        horizon=trainer.horizon,
    )
    labels = {"task": trainer.task, "stage": Stage.CANDIDATE, "snapshot": panel.snapshot.id}
    model = trainer.save(fitted, card.to_metadata(), labels)
    return ModelResult(name, str(model.tag), card, evaluation, fitted, evaluated - started, finished - evaluated)


def train(
    snapshot: str = "latest",
    names: tuple[str, ...] = MODEL_NAMES,
    config: TrainingConfig | None = None,
    store: SnapshotStore | None = None,
    reports_root: Path | None = None,
    on_progress: Progress | None = None,
) -> TrainingRun:
    """Train ``names`` on a snapshot. A model that fails is recorded in ``failures``; the others go on."""
    config = config or TrainingConfig()
    settings = DataSettings()
    store = store or SnapshotStore(settings.snapshots)
    info = store.info(snapshot)
    notify = on_progress or (lambda name, state: None)
    notify("panel", "building features and targets")
    panel = build_panel(store.load(info.id), info, config.horizon, config.first_date)
    run = TrainingRun(run_id=f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{info.id[:8]}", snapshot=info, config=config)
    for name in names:
        notify(name, "training")
        try:
            run.results.append(train_one(name, panel, config))
        except Exception as error:  # one model's failure must not stop the others
            run.failures[name] = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=5)}"
            notify(name, "failed")
        else:
            notify(name, "done")
    notify("report", "writing")
    from training.evaluation.report import write_report

    run.report_dir = write_report(run, panel, (reports_root or settings.home / "reports") / run.run_id)
    return run


def summary(run: TrainingRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "snapshot": run.snapshot.id,
        "models": {r.name: r.tag for r in run.results},
        "failures": {k: v.splitlines()[0] for k, v in run.failures.items()},
        "report": str(run.report_dir) if run.report_dir else None,
    }
