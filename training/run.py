"""A training run: evaluate, fit, audit and save the chosen models on one snapshot, then write the report.

Where the work runs (``training_client``): with a scheduler address (``--scheduler`` or ``MLOPS_DASK_SCHEDULER``) on
that cluster; otherwise on a local cluster of worker processes (one single-threaded process per core) when the
snapshot has at least ``LOCAL_CLUSTER_MIN_SYMBOLS`` symbols, and in this process below that. Measured with
``--quick``, all six models, 2 cores, wall time of the run with the cluster's start and stop (about 3.4 s):

=========================================  ==========  ======================
symbols (embedded indices + perturbed)     in process  local cluster, 2 workers
=========================================  ==========  ======================
2 (the embedded data)                      15.0 s      17.7 s
4                                          23.3 s      21.0 s
8                                          45.7 s      35.2 s
=========================================  ==========  ======================

so a local cluster starts from 4 symbols on (``--local-cluster-min-symbols`` overrides it); the demo and the tests
(2 symbols) train in process as before. On a cluster the per-symbol features, every model's folds and final fit,
Prophet's symbols and the HMM's refits are tasks (``training/models/execution.py``), and the models are trained
side by side, so the cluster is never idle waiting for one model's last task.
"""

from __future__ import annotations

import threading
import traceback
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from typing import Any

from distributed import Client

from cluster import ClusterSettings, cluster_for
from data.settings import DataSettings
from data.snapshots import SnapshotInfo, SnapshotStore
from features.catalog import MODEL_NAMES, model_kind
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.evaluation.audit import leakage_audit
from training.evaluation.drift_reference import drift_references, feature_references
from training.evaluation.walk_forward import Evaluation
from training.models.execution import IN_PROCESS, Execution
from training.models.trainer import Fitted, Trainer
from training.registry.card import ModelCard, build_card
from training.registry.store import Stage

#: Fewest symbols for which a run without a scheduler address starts a local cluster (see the module's docstring).
LOCAL_CLUSTER_MIN_SYMBOLS = 4


@contextmanager
def training_client(
    settings: ClusterSettings, symbols: int, min_symbols: int = LOCAL_CLUSTER_MIN_SYMBOLS
) -> Iterator[Client | None]:
    """The client a run of ``symbols`` symbols uses: the named cluster; else a local cluster from ``min_symbols``
    symbols on; else None (in this process, no cluster started)."""
    with cluster_for(settings, symbols, min_symbols) as client:
        yield client


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


_REFERENCES_LOCK = threading.Lock()
#: The features' drift references of the latest panel: (a weak reference to it, its references).
_REFERENCES: list[tuple[weakref.ref[Panel], dict[str, Any]]] = []


def panel_feature_references(panel: Panel) -> dict[str, Any]:
    """The features' drift references of ``panel``, computed once for all its models (the run's and the flow's model
    threads share one panel; the panel itself is not kept alive for them)."""
    with _REFERENCES_LOCK:
        if not _REFERENCES or _REFERENCES[0][0]() is not panel:
            computed = feature_references(panel.features, panel.spec.names, panel.dates, panel.symbols)
            _REFERENCES[:] = [(weakref.ref(panel), computed)]
        return _REFERENCES[0][1]


def train_one(name: str, panel: Panel, config: TrainingConfig, execution: Execution = IN_PROCESS) -> ModelResult:
    """Walk-forward evaluation, final fit on the whole snapshot, leakage audit, save with its card.

    The evaluation's and the fit's tasks run where ``execution`` says; ``evaluate_seconds`` and ``fit_seconds`` are
    their compute seconds (summed over tasks), ``training_seconds`` on the card their total.
    """
    trainer = trainer_class(name)(config, execution=execution)
    evaluation, fitted, evaluate_seconds, fit_seconds = trainer.evaluate_and_fit(panel)
    card = build_card(
        trainer=trainer,
        evaluation=evaluation,
        fitted=fitted,
        spec=panel.spec,
        snapshot=panel.snapshot,
        panel_dates=panel.dates,
        audit=leakage_audit(evaluation),
        training_seconds=evaluate_seconds + fit_seconds,
        horizon=trainer.horizon,
        drift_reference=drift_references(
            trainer.task,
            panel_feature_references(panel),
            evaluation.predictions,
            n_states=getattr(fitted.model, "n_states", None),
        ),
    )
    labels = {"task": trainer.task, "stage": Stage.CANDIDATE, "snapshot": panel.snapshot.id}
    model = trainer.save(fitted, card.to_metadata(), labels)
    return ModelResult(name, str(model.tag), card, evaluation, fitted, evaluate_seconds, fit_seconds)


def train(
    snapshot: str = "latest",
    names: tuple[str, ...] = MODEL_NAMES,
    config: TrainingConfig | None = None,
    store: SnapshotStore | None = None,
    reports_root: Path | None = None,
    on_progress: Progress | None = None,
    client: Client | None = None,
) -> TrainingRun:
    """Train ``names`` on a snapshot. A model that fails is recorded in ``failures``; the others go on.

    With ``client``, the work runs as tasks on its cluster and the models side by side; without, here, one model
    after the other. The models, cards and report are the same either way.
    """
    config = config or TrainingConfig()
    settings = DataSettings()
    store = store or SnapshotStore(settings.snapshots)
    info = store.info(snapshot)
    notify = on_progress or (lambda name, state: None)
    notify("panel", "building features and targets")
    panel = build_panel(store, info, config.horizon, config.first_date, client=client)
    run = TrainingRun(run_id=f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{info.id[:8]}", snapshot=info, config=config)
    execution = Execution(client)
    execution.shared(panel)  # scattered to every worker once, before the models' threads ask for it

    def one(name: str) -> ModelResult | str:
        notify(name, "training")
        try:
            result = train_one(name, panel, config, execution)
        except Exception as error:  # one model's failure must not stop the others
            notify(name, "failed")
            return f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=5)}"
        notify(name, "done")
        return result

    try:
        if client is None:
            outcomes = [one(name) for name in names]
        else:  # the client's threads only wait on the cluster's tasks and save what comes back
            with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="train") as pool:
                outcomes = list(pool.map(one, names))
    finally:
        execution.release()
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, str):
            run.failures[name] = outcome
        else:
            run.results.append(outcome)
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
