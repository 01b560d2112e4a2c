"""``retrain``: the Prefect flow that pulls, validates, trains, gates, promotes, builds and smoke-tests.

Run it once with ``mlops retrain run [--quick]``, or serve it on a schedule with ``mlops retrain serve`` and trigger
a run of the served deployment with ``prefect deployment run 'retrain/daily'`` (cli/retrain.py). No Prefect server is
needed: without ``PREFECT_API_URL`` it starts a temporary local API. Prefect is quiet and offline unless told.

Beside this module (training/flows/): the training cache (cache.py), the promotion lock (lock.py), the summary and its
artifacts (summary.py), the gate (gate.py), the store prune (prune.py); the snapshot checks are data/quality.py and
the smoke test deploy/smoke.py.
"""

# No ``from __future__ import annotations`` here: a served deployment rebuilds the flow's parameter model from
# its signature in a fresh process, and string annotations (``Literal[...]``) do not resolve there.
import os

# Quiet and offline by default; the user's own settings win. Prefect reads them when it is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from prefect import flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from data.quality import SanityThresholds, SnapshotUnusableError
from data.settings import DataSettings
from data.snapshots import SnapshotError, SnapshotInfo, SnapshotStore
from data.sources import EMBEDDED_SYMBOLS
from deploy.bento import PROJECT_ROOT
from training.config import TrainingConfig
from training.dataset import Panel
from training.flows.cache import TrainingKey, record_report, report_of, training_key
from training.flows.gate import GateRules, RuleSet, load_rules
from training.flows.lock import PromotionLockTimeout, promotion_lock
from training.flows.prune import prune_store
from training.flows.summary import RetrainFailed, RunRecord, publish_artifacts
from training.flows.tasks import (
    PullFailed,
    Trained,
    build_bento,
    build_training_panel,
    check_snapshot,
    gate_challengers,
    make_source,
    pull_snapshot,
    smoke_test_bento,
    train_model,
)
from training.registry.promotion import PromotionError, Registry
from training.registry.store import MODEL_NAMES, Stage, set_stage
from training.run import TrainingRun

FLOW_NAME = "retrain"
#: Longest first, so two workers finish together (Prophet is about half of the quick mode's training time).
TRAINING_ORDER: tuple[str, ...] = ("price_prophet", *(n for n in MODEL_NAMES if n != "price_prophet"))


class RetrainSettings(BaseSettings):
    """Defaults of the flow and its schedule, read from the environment (prefix ``MLOPS_RETRAIN_``)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_RETRAIN_", extra="ignore")

    tickers: list[str] = Field(list(EMBEDDED_SYMBOLS), description="The yfinance universe.")
    workers: int = Field(2, ge=1, description="Models trained at once (threads; see benchmarks/results/flow.md).")
    lock_timeout_seconds: float = Field(900.0, ge=0, description="How long a run waits for another run's promotion.")
    smoke_timeout_seconds: float = Field(180.0, gt=0, description="How long the built Bento may take to be ready.")
    deployment_name: str = Field("daily", description="Name of the served deployment.")
    cron: str = Field("0 22 * * 1-5", description="Schedule of the served deployment (after the US close).")
    prune_keep: int | None = Field(None, ge=1, description="Prune the store to N versions after a run; off: None.")


T = TypeVar("T")


def unvisited(value: T) -> T:
    """Hand ``value`` to a task without Prefect walking through it (a panel holds large arrays and frames); as it is
    on prefect-dask's runner, where Dask would rebuild the ``quote`` (a tuple) as a plain tuple on the worker."""
    context = FlowRunContext.get()
    if context is not None and type(context.task_runner).__name__ == "DaskTaskRunner":
        return value
    return cast(T, quote(value))


def thread_runner(workers: int) -> Any:
    """Prefect's thread-pool task runner (typed Any: Prefect's task-runner generics do not line up for mypy)."""
    return ThreadPoolTaskRunner(max_workers=workers)


def dask_runner(address: str) -> Any:
    """prefect-dask's task runner on the Dask cluster at ``address``: the flow's tasks run on its workers, and the
    training tasks submit their folds, symbols and refits to the same cluster (``training/flows/tasks.py``)."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)


def _finish(record: RunRecord) -> dict[str, Any] | State:
    summary = record.to_dict()
    publish_artifacts(summary)
    if record.failures:
        message = "; ".join(f.splitlines()[0] for f in record.failures)
        return Failed(message=message, data=RetrainFailed(message, summary))
    return summary


def _error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@flow(name=FLOW_NAME, task_runner=thread_runner(RetrainSettings().workers))
def retrain(
    quick: bool = False,
    source: Literal["embedded", "yfinance", "synthetic"] = "embedded",
    tickers: list[str] | None = None,
    synthetic: tuple[int, float, int] = (200, 15.0, 0),
    start: str | None = None,
    end: str | None = None,
    snapshot: str | None = None,
    use_cached_on_failure: bool = False,
    models: list[str] | None = None,
    force: bool = False,
    rules_path: Path | None = None,
    thresholds: SanityThresholds | None = None,
    registry_root: Path | None = None,
    snapshot_dir: Path | None = None,
    reports_root: Path | None = None,
    build_context: Path | None = None,
    containerize: bool = False,
    lock_timeout_seconds: float | None = None,
    smoke_timeout_seconds: float | None = None,
    scheduler: str | None = None,
    prune_keep: int | None = None,
    reason: str = "asked for",
) -> dict[str, Any] | State:
    """Pull, validate, train every model, gate each against production, promote, build and smoke-test the Bento.

    Returns a summary of every step. The final state is Failed when the data could not be pulled (and no fallback
    was asked for) or was unusable, a model failed to train, the training report could not be written, or the
    gate, promotion, build or smoke test failed; production is then what it was before, except for the models
    this run promoted that passed every step after (a failed trainer does not hold back the others).

    ``scheduler``: the Dask cluster of the run (``tcp://HOST:8786``), where the training tasks send their folds,
    symbols and refits; run the flow with ``task_runner=dask_runner(scheduler)`` to put its own tasks there too
    (``mlops retrain run`` does both). Without one, and not on a Dask worker, everything runs in this process.
    ``reason``: what started the run (the monitor's alert rules name the evidence), kept in the summary.
    """
    logger = get_run_logger()
    settings = RetrainSettings()
    rules: GateRules = load_rules(rules_path)
    config = TrainingConfig.quick() if quick else TrainingConfig()
    names = tuple(models) if models else MODEL_NAMES
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; the models are {', '.join(MODEL_NAMES)}")
    record = RunRecord(
        flow_run=str(flow_run.get_name() or "local"),
        mode="quick" if quick else "full",
        rules=str(rules_path or "training/flows/gate_rules.toml"),
        trigger=reason,
    )
    store = SnapshotStore(snapshot_dir or DataSettings().snapshots)

    # 1-2: data
    try:
        with record.step("pull"):
            if snapshot is None:
                source_ = make_source(source, tickers or settings.tickers, start, end, synthetic)
                info, record.pull = pull_snapshot(store, unvisited(source_), use_cached_on_failure)
                record.pull["source"] = source_.describe()
            else:
                info = store.info(snapshot)
                record.pull = {"ok": True, "skipped": f"snapshot {info.id} given"}
        record.snapshot = {k: v for k, v in info.to_dict().items() if k != "origin"}
        logger.info(f"snapshot {info.id}: {', '.join(info.symbols)} {info.start}..{info.end}")
        with record.step("validate"):
            record.validation = check_snapshot(store, info, thresholds or SanityThresholds())
    except SnapshotUnusableError as error:
        record.validation = error.report.to_dict()
        record.failures.append(str(error))
        return _finish(record)
    except (PullFailed, SnapshotError) as error:
        record.failures.append(str(error))
        return _finish(record)

    # 3: train (or reuse) every model, each in its own task
    with record.step("train"):
        panel = build_training_panel(store, info, config, scheduler)
        challengers = _train_all(record, panel, config, training_key(info.id, config), names, force, scheduler)
    with record.step("report"):
        _write_report(record, info, config, panel, challengers, reports_root)

    # 4-7: gate, promote, build, smoke-test, under the promotion lock
    registry = Registry(registry_root)
    lock_timeout = settings.lock_timeout_seconds if lock_timeout_seconds is None else lock_timeout_seconds
    smoke_timeout = settings.smoke_timeout_seconds if smoke_timeout_seconds is None else smoke_timeout_seconds
    try:
        with promotion_lock(registry.root, f"flow run {record.flow_run}", lock_timeout, logger.warning) as lock:
            record.lock = lock
            if lock["held_by"]:
                logger.warning(f"waited {lock['waited_seconds']} s for the promotion lock held by {lock['held_by']}")
            _gate_promote_build(
                record, registry, challengers, rules.for_mode(quick), build_context, smoke_timeout, containerize
            )
    except PromotionLockTimeout as error:
        record.lock = {"gave_up": str(error)}
        record.failures.append(str(error))
    prune_store(record, registry, settings.prune_keep if prune_keep is None else prune_keep)  # flows/prune.py
    return _finish(record)


def _train_all(
    record: RunRecord,
    panel: Panel,
    config: TrainingConfig,
    key: TrainingKey,
    names: tuple[str, ...],
    force: bool,
    scheduler: str | None = None,
) -> dict[str, Trained]:
    """One task per model on the task runner; a model that fails is recorded and the others go on."""
    futures = {
        name: train_model.submit(name, unvisited(panel), config, key, force, scheduler)
        for name in TRAINING_ORDER
        if name in names
    }
    challengers: dict[str, Trained] = {}
    for name, future in futures.items():
        future.wait()
        if future.state.is_completed():
            trained: Trained = future.result()
            challengers[name] = trained
            record.models[name] = {"status": trained.origin, "tag": trained.tag, "seconds": trained.seconds}
            get_run_logger().info(f"{trained.tag}: {trained.origin} in {trained.seconds} s")
        else:
            raised = future.state.result(raise_on_failure=False)
            message = _error(raised) if isinstance(raised, BaseException) else str(future.state.message)
            record.models[name] = {"status": "failed", "error": message}
            record.failures.append(f"{name} failed to train: {message}")
    return challengers


def _write_report(
    record: RunRecord,
    info: SnapshotInfo,
    config: TrainingConfig,
    panel: Panel,
    challengers: dict[str, Trained],
    reports_root: Path | None,
) -> None:
    """The training report of the models trained in this run; for models reused from the store, the report of the
    run that trained them. A report that cannot be written fails the run but does not hold back the gate."""
    for name, trained in challengers.items():
        if trained.origin == "cached" and (earlier := report_of(trained.tag)):
            record.models[name]["report"] = earlier
    results = [t.result for t in challengers.values() if t.result is not None]
    failures = {n: m["error"] for n, m in record.models.items() if m["status"] == "failed"}
    if results or failures:
        from training.evaluation.report import write_report

        run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{info.id[:8]}-retrain"
        run = TrainingRun(run_id=run_id, snapshot=info, config=config, results=results, failures=failures)
        root = reports_root or DataSettings().home / "reports"
        try:
            report = str(write_report(run, panel, root / run.run_id) / "index.html")
            record_report([r.tag for r in results], report)
        except Exception as error:  # the models are saved; the humans' view of them is what failed
            record.failures.append(f"the training report could not be written to {root}: {_error(error)}")
            return
        record.report, record.report_of_this_run = report, True
        for result in results:
            record.models[result.name]["report"] = report
    else:
        reused = [m["report"] for m in record.models.values() if m.get("report")]
        record.report = max(reused) if reused else None  # run ids start with their UTC time: the newest


def _gate_promote_build(
    record: RunRecord,
    registry: Registry,
    challengers: dict[str, Trained],
    rules: RuleSet,
    build_context: Path | None,
    smoke_timeout: float,
    containerize: bool = False,
) -> None:
    """Gate every challenger against production; promote those that pass (all at once); build and smoke-test the
    new Bento, and roll the promotions back if either fails; then, if asked, its OCI image."""
    logger = get_run_logger()
    production = registry.production()
    record.production_before = dict(production)
    tags = {name: trained.tag for name, trained in challengers.items()}
    try:
        with record.step("gate"):
            decisions = gate_challengers(tags, production, rules)
    except Exception as error:  # a card that cannot be read, a store that moved: nothing is promoted
        record.failures.append(f"the gate failed, nothing was promoted: {_error(error)}")
        return
    for name, tag in tags.items():
        decision = decisions.get(name)
        record.gate[name] = (
            decision.to_dict()
            if decision
            else {"name": name, "challenger": tag, "production": tag, "passed": True, "checks": [], "unchanged": True}
        )
    passing = {name: d.challenger for name, d in decisions.items() if d.passed}
    for name, decision in decisions.items():
        if not decision.passed:
            set_stage(decision.challenger, Stage.REJECTED)
            record.rejected[name] = decision.challenger
            logger.warning(f"{decision.challenger} rejected: {'; '.join(decision.reasons)}")
    if not passing:
        return
    missing = [n for n in MODEL_NAMES if n not in production and n not in passing]
    if missing:
        record.failures.append(
            f"nothing promoted: the Bento serves all six models and {', '.join(missing)} has no production version "
            f"and no challenger that passed the gate in this run ({', '.join(passing.values())} stay candidates)"
        )
        return
    try:
        with record.step("promote"):
            record.promoted = registry.promote(list(passing.values()), reason=f"retrain flow run {record.flow_run}")
        logger.info(f"promoted {', '.join(record.promoted.values()) or 'nothing new'}")
    except PromotionError as error:
        record.failures.append(f"promotion refused, nothing changed: {error}")
        return
    if not record.promoted:
        return
    new_production = registry.production()
    context = build_context or PROJECT_ROOT
    try:
        with record.step("build"):
            record.bento = build_bento(new_production, context)
        with record.step("smoke_test"):
            record.smoke_test = smoke_test_bento(record.bento, new_production, smoke_timeout)
        logger.info(f"built {record.bento}; the smoke test called every method")
    except Exception as error:  # a build or smoke-test failure of any kind leaves production as it was
        step = "smoke test" if record.bento else "bentoml build"
        record.failures.append(f"{step} failed ({_error(error)}); promotions of this run rolled back")
        _roll_back(record, registry, step)
        return
    if containerize:
        _containerize(record, new_production, smoke_timeout)


def _containerize(record: RunRecord, production: dict[str, str], smoke_timeout: float) -> None:
    """The OCI image of the new Bento, started and called on every method (deploy/image.py).

    A failure fails the run but keeps the promotions: the Bento passed its smoke test and serves them; the image is
    packaging, rebuilt with ``mlops image --bento <tag>`` once the cause (tools, disk, registry) is fixed.
    """
    from deploy.image import containerize, smoke_test_image

    assert record.bento is not None
    try:
        with record.step("containerize"):
            result = containerize(record.bento, say=get_run_logger().info)
            record.image = {
                **result.model_dump(),
                "smoke_test": smoke_test_image(result.image, production, smoke_timeout),
            }
        get_run_logger().info(f"image {result.image} ({result.size_bytes / 2**20:.0f} MiB) answered every method")
    except Exception as error:
        record.failures.append(
            f"containerize failed ({_error(error)}); the promotions stand (the Bento {record.bento} passed its smoke "
            f"test): rebuild the image with `mlops image --bento {record.bento}`"
        )


def _roll_back(record: RunRecord, registry: Registry, step: str) -> None:
    """Put back what production was before this run; a model's first production version cannot be undone."""
    state = registry.state()["models"]
    names = [n for n in record.promoted if state.get(n, {}).get("previous")]
    first = [n for n in record.promoted if n not in names]
    if names:
        try:
            record.rolled_back = registry.rollback(names, reason=f"retrain flow run {record.flow_run}: {step} failed")
        except PromotionError as error:
            record.failures.append(f"rollback failed, production still names this run's models: {error}")
            return
        for name in names:
            set_stage(record.promoted[name], Stage.REJECTED)
    if first:
        record.failures.append(
            f"cannot roll back {', '.join(first)}: this run promoted their first production version; "
            "promote a known-good version with `mlops promote` before serving"
        )
