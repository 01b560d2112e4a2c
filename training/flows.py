"""``retrain``: the Prefect flow that pulls, validates, trains, gates, promotes, builds and smoke-tests.

Run it once with ``python -m training.flows run [--quick]`` (``mlops retrain run``), or serve it on a schedule
with ``python -m training.flows serve --cron '0 22 * * 1-5'`` and trigger a run of the served deployment with
``prefect deployment run 'retrain/daily'``. No Prefect server is needed: without ``PREFECT_API_URL`` a run starts a
temporary local API. Prefect is kept quiet and offline unless the environment says otherwise.
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

import contextlib
import fcntl
import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, cast

import typer
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from data.pull import PullError, pull
from data.settings import DataSettings
from data.snapshots import SnapshotError, SnapshotInfo, SnapshotStore
from data.sources import EMBEDDED_SYMBOLS, EmbeddedSource, Source, YFinanceSource
from features.ohlcv import OHLCVValidationError
from training.bento import PROJECT_ROOT
from training.bento import build as build_bento_from
from training.card import library_versions
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.gate import Decision, GateRules, RuleSet, gate, load_rules
from training.registry import PromotionError, Registry
from training.run import ModelResult, TrainingRun, train_one
from training.smoke import smoke_test
from training.store import MODEL_NAMES, Stage, get_model, list_models, set_stage
from training.validation import SanityThresholds, SnapshotUnusableError, validate_snapshot

FLOW_NAME = "retrain"
CONTAINERIZE_NOT_IMPLEMENTED = (
    "containerize is not implemented in this issue; see issue 6 (the OCI image). "
    "Run without --containerize; the flow builds and smoke-tests the Bento."
)
#: Modules of training/ that orchestrate or describe models without changing what a trainer fits: editing them
#: must not make the store's trained models look stale. Every other module of training/ and features/ counts.
ORCHESTRATION_MODULES = frozenset({"flows", "gate", "validation", "cli", "demo", "bento", "registry", "report"})
#: Longest first, so two workers finish together (Prophet is about half of the quick mode's training time).
TRAINING_ORDER: tuple[str, ...] = ("price_prophet", *(n for n in MODEL_NAMES if n != "price_prophet"))
PROMOTION_LOCK_FILE = "retrain.lock"


class RetrainSettings(BaseSettings):
    """Defaults of the flow and its schedule, read from the environment (prefix ``MLOPS_RETRAIN_``)."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_RETRAIN_", extra="ignore")

    tickers: list[str] = Field(list(EMBEDDED_SYMBOLS), description="The yfinance universe.")
    workers: int = Field(2, ge=1, description="Models trained at once (threads; see benchmarks/results/flow.md).")
    lock_timeout_seconds: float = Field(900.0, ge=0, description="How long a run waits for another run's promotion.")
    smoke_timeout_seconds: float = Field(180.0, gt=0, description="How long the built Bento may take to be ready.")
    deployment_name: str = Field("daily", description="Name of the served deployment.")
    cron: str = Field("0 22 * * 1-5", description="Schedule of the served deployment (after the US close).")


T = TypeVar("T")


def unvisited(value: T) -> T:
    """Hand ``value`` to a task without Prefect walking through it (a panel holds large arrays and frames)."""
    return cast(T, quote(value))


def thread_runner(workers: int) -> Any:
    """Prefect's thread-pool task runner (typed Any: Prefect's task-runner generics do not line up for mypy)."""
    return ThreadPoolTaskRunner(max_workers=workers)


class RetrainFailed(RuntimeError):
    """The run failed at a step that matters; ``summary`` says what happened at every step."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary

    def __reduce__(self) -> tuple[Any, ...]:
        return (RetrainFailed, (str(self), self.summary))  # picklable, if Prefect persists the failed state


# ---------------------------------------------------------------------------------------------- idempotence


@dataclass(frozen=True)
class TrainingKey:
    """What a trained model depends on: the snapshot, the code that trains it and the training config.

    Recorded as labels of every model the flow trains; a model of the store with the same labels is reused
    instead of trained again, so a rerun on an unchanged snapshot trains nothing.
    """

    snapshot: str
    code_version: str
    config: str

    def labels(self) -> dict[str, str]:
        return {"snapshot": self.snapshot, "code_version": self.code_version, "training_config": self.config}


@functools.cache
def code_version() -> str:
    """A hash of the training and feature code this process runs (orchestration modules left out) and the
    library versions."""
    digest = hashlib.sha256()
    for package in ("features", "training"):
        for path in sorted((PROJECT_ROOT / package).glob("*.py")):
            if package == "training" and path.stem in ORCHESTRATION_MODULES:
                continue
            digest.update(f"{package}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    for library, version in sorted(library_versions().items()):
        digest.update(f"{library}={version}\0".encode())
    return digest.hexdigest()[:16]


def training_key(snapshot_id: str, config: TrainingConfig) -> TrainingKey:
    config_hash = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    return TrainingKey(snapshot_id, code_version(), config_hash)


def find_trained(name: str, key: TrainingKey) -> str | None:
    """The newest stored ``name`` trained under ``key`` with a complete card, if any."""
    wanted = key.labels()
    for stored in list_models((name,)):
        if all(stored.labels.get(k) == v for k, v in wanted.items()) and stored.card_or_none() is not None:
            return stored.tag
    return None


def record_training_key(tag: str, key: TrainingKey) -> None:
    """Label a stored model with the key it was trained under (what :func:`find_trained` looks for)."""
    import bentoml

    model = bentoml.models.get(tag)
    model.info.labels.update(key.labels())
    model.flush()


# ------------------------------------------------------------------------------------------- promotion lock


class PromotionLockTimeout(RuntimeError):
    """Another run held the promotion lock for longer than this run would wait."""


def _lock_holder(handle: Any) -> str:
    handle.seek(0)
    return handle.read().strip() or "another process"


@contextlib.contextmanager
def promotion_lock(
    root: Path, holder: str, timeout: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Hold ``<root>/retrain.lock`` from gate to smoke test, so two runs never both promote.

    A separate file from the registry's own lock, which ``Registry.promote`` takes inside this one (``flock`` on
    the same file twice in one process would deadlock). Yields a record of the wait: seconds and who held it.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / PROMOTION_LOCK_FILE
    with open(path, "a+") as handle:
        started = time.monotonic()
        waited_for: str | None = None
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                current = _lock_holder(handle)
                if waited_for is None and on_wait is not None:
                    on_wait(f"waiting up to {timeout:g} s for the promotion lock {path}, held by {current}")
                waited_for = current
                if time.monotonic() - started >= timeout:
                    raise PromotionLockTimeout(
                        f"gave up after {timeout:g} s waiting for the promotion lock {path}, held by {current}; "
                        "nothing was gated or promoted (the trained models stay in the store as candidates): "
                        "rerun when that run has finished"
                    ) from None
                time.sleep(0.2)
        record = {"waited_seconds": round(time.monotonic() - started, 2), "held_by": waited_for}
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder}, pid {os.getpid()}, since {datetime.now(UTC).isoformat(timespec='seconds')}")
        handle.flush()
        try:
            yield record
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------------- tasks


@dataclass
class Trained:
    """A challenger: freshly trained in this run, or reused from the store (same snapshot, code, config)."""

    name: str
    tag: str
    origin: Literal["trained", "cached"]
    seconds: float
    result: ModelResult | None = field(default=None, repr=False)


def make_source(kind: str, tickers: list[str] | None, start: str | None, end: str | None) -> Source:
    """The source a run pulls from (tests replace the yfinance downloader here)."""
    if kind == "embedded":
        return EmbeddedSource()
    if kind != "yfinance":
        raise ValueError(f"unknown source {kind!r}: embedded or yfinance")
    settings = DataSettings()
    return YFinanceSource(
        tuple(tickers or RetrainSettings().tickers),
        start=start,
        end=end,
        deadline_seconds=settings.yfinance_deadline_seconds,
        request_timeout_seconds=settings.yfinance_request_timeout_seconds,
        attempts=settings.yfinance_attempts,
        backoff_seconds=settings.yfinance_backoff_seconds,
    )


class PullFailed(RuntimeError):
    """The pull failed and the run was not asked to fall back to a cached snapshot."""


@task(name="pull", cache_policy=NO_CACHE)
def pull_snapshot(
    store: SnapshotStore, source: Source, use_cached_on_failure: bool
) -> tuple[SnapshotInfo, dict[str, Any]]:
    """Pull into a snapshot (the source retries within its overall deadline); fall back only if asked."""
    started = time.perf_counter()
    try:
        info, new = pull(source, store)
    except (PullError, OHLCVValidationError) as error:
        message = f"{source.name} pull failed: {error}" if isinstance(error, OHLCVValidationError) else str(error)
        if not use_cached_on_failure:
            raise PullFailed(
                f"{message}\nNothing was trained. To train on the latest cached snapshot instead, rerun with "
                "--use-cached-on-failure (use_cached_on_failure=True)."
            ) from error
        try:
            info = store.latest()
        except SnapshotError as missing:
            raise PullFailed(f"{message}\nand no cached snapshot to fall back on: {missing}") from error
        get_run_logger().warning(f"{message.splitlines()[0]}; proceeding on the latest snapshot {info.id}")
        seconds = round(time.perf_counter() - started, 2)
        return info, {"ok": False, "error": message, "fallback": info.id, "seconds": seconds}
    return info, {"ok": True, "new": new, "seconds": round(time.perf_counter() - started, 2)}


@task(name="validate", cache_policy=NO_CACHE)
def check_snapshot(store: SnapshotStore, info: SnapshotInfo, thresholds: SanityThresholds) -> dict[str, Any]:
    """The OHLCV contract (and the snapshot's hash) plus the sanity checks; raise when unusable."""
    report = validate_snapshot(store.load(info.id, verify=True), info.id, thresholds)
    if not report.usable:
        raise SnapshotUnusableError(report)
    for finding in report.warnings:
        get_run_logger().warning(str(finding))
    return report.to_dict()


@task(name="build-panel", cache_policy=NO_CACHE)
def build_training_panel(store: SnapshotStore, info: SnapshotInfo, config: TrainingConfig) -> Panel:
    return build_panel(store.load(info.id, verify=False), info, config.horizon, config.first_date)


@task(name="train", task_run_name="train-{name}", cache_policy=NO_CACHE)
def train_model(name: str, panel: Panel, config: TrainingConfig, key: TrainingKey, force: bool) -> Trained:
    """Reuse the store's model trained under ``key``, or evaluate, fit, audit and save a new one."""
    started = time.perf_counter()
    if not force and (tag := find_trained(name, key)) is not None:
        return Trained(name, tag, "cached", round(time.perf_counter() - started, 2))
    result = train_one(name, panel, config)
    record_training_key(result.tag, key)
    return Trained(name, result.tag, "trained", round(time.perf_counter() - started, 2), result)


def _metadata(tag: str | None) -> dict[str, Any] | None:
    if tag is None:
        return None
    try:
        return get_model(tag).metadata
    except LookupError:
        return {}


@task(name="gate", cache_policy=NO_CACHE)
def gate_challengers(challengers: dict[str, str], production: dict[str, str], rules: RuleSet) -> dict[str, Decision]:
    """The gate's decision on every challenger that is not already production."""
    return {
        name: gate(tag, get_model(tag).metadata, rules, production.get(name), _metadata(production.get(name)))
        for name, tag in challengers.items()
        if production.get(name) != tag
    }


@task(name="build-bento", cache_policy=NO_CACHE)
def build_bento(production: dict[str, str], context: Path) -> str:
    return build_bento_from(production, context)


@task(name="smoke-test", cache_policy=NO_CACHE)
def smoke_test_bento(bento_tag: str, production: dict[str, str], timeout: float) -> dict[str, Any]:
    return smoke_test(bento_tag, production, timeout)


# ------------------------------------------------------------------------------------------------ the flow


@dataclass
class RunRecord:
    """What a run did at every step; returned as a dict and shown in the artifacts."""

    flow_run: str
    mode: str
    rules: str
    snapshot: dict[str, Any] | None = None
    pull: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    gate: dict[str, dict[str, Any]] = field(default_factory=dict)
    production_before: dict[str, str] = field(default_factory=dict)
    promoted: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    rolled_back: dict[str, str] = field(default_factory=dict)
    lock: dict[str, Any] | None = None
    bento: str | None = None
    smoke_test: dict[str, Any] | None = None
    report: str | None = None
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a step into ``seconds``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 2)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": not self.failures}


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
    source: Literal["embedded", "yfinance"] = "embedded",
    tickers: list[str] | None = None,
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
) -> dict[str, Any] | State:
    """Pull, validate, train every model, gate each against production, promote, build and smoke-test the Bento.

    Returns a summary of every step; the final state is Failed when a model failed to train, the data could not
    be pulled or was unusable, or the promotion, build or smoke test failed (production is then left as it was).
    """
    if containerize:
        raise NotImplementedError(CONTAINERIZE_NOT_IMPLEMENTED)
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
        rules=str(rules_path or "training/gate_rules.toml"),
    )
    store = SnapshotStore(snapshot_dir or DataSettings().snapshots)

    # 1-2: data
    try:
        with record.step("pull"):
            if snapshot is None:
                source_ = unvisited(make_source(source, tickers, start, end))
                info, record.pull = pull_snapshot(store, source_, use_cached_on_failure)
            else:
                info = store.info(snapshot)
                record.pull = {"ok": True, "skipped": f"snapshot {info.id} given"}
        record.snapshot = {k: v for k, v in info.to_dict().items() if k != "origin"}
        logger.info(f"snapshot {info.id}: {', '.join(info.symbols)} {info.start}..{info.end}")
        with record.step("validate"):
            record.validation = check_snapshot(store, info, thresholds or SanityThresholds())
    except (PullFailed, SnapshotError, SnapshotUnusableError) as error:
        record.failures.append(str(error))
        return _finish(record)

    # 3: train (or reuse) every model, each in its own task
    with record.step("train"):
        panel = build_training_panel(store, info, config)
        challengers = _train_all(record, panel, config, training_key(info.id, config), names, force)
    with record.step("report"):
        record.report = _write_report(record, info, config, panel, challengers, reports_root)

    # 4-7: gate, promote, build, smoke-test, under the promotion lock
    registry = Registry(registry_root)
    lock_timeout = settings.lock_timeout_seconds if lock_timeout_seconds is None else lock_timeout_seconds
    try:
        with promotion_lock(registry.root, f"flow run {record.flow_run}", lock_timeout, logger.warning) as lock:
            record.lock = lock
            if lock["held_by"]:
                logger.warning(f"waited {lock['waited_seconds']} s for the promotion lock held by {lock['held_by']}")
            smoke_timeout = settings.smoke_timeout_seconds if smoke_timeout_seconds is None else smoke_timeout_seconds
            _gate_promote_build(record, registry, challengers, rules.for_mode(quick), build_context, smoke_timeout)
    except PromotionLockTimeout as error:
        record.lock = {"gave_up": str(error)}
        record.failures.append(str(error))
    return _finish(record)


def _train_all(
    record: RunRecord, panel: Panel, config: TrainingConfig, key: TrainingKey, names: tuple[str, ...], force: bool
) -> dict[str, Trained]:
    """One task per model on the task runner; a model that fails is recorded and the others go on."""
    futures = {
        name: train_model.submit(name, unvisited(panel), config, key, force) for name in TRAINING_ORDER if name in names
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


def _gate_promote_build(
    record: RunRecord,
    registry: Registry,
    challengers: dict[str, Trained],
    rules: RuleSet,
    build_context: Path | None,
    smoke_timeout: float,
) -> None:
    logger = get_run_logger()
    production = registry.production()
    record.production_before = dict(production)
    tags = {name: trained.tag for name, trained in challengers.items()}
    with record.step("gate"):
        decisions = gate_challengers(tags, production, rules)
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
    try:
        with record.step("build"):
            record.bento = build_bento(new_production, build_context or PROJECT_ROOT)
        with record.step("smoke_test"):
            record.smoke_test = smoke_test_bento(record.bento, new_production, smoke_timeout)
        logger.info(f"built {record.bento}; the smoke test called every method")
    except Exception as error:  # a build or smoke-test failure of any kind leaves production as it was
        step = "smoke test" if record.bento else "bentoml build"
        record.failures.append(f"{step} failed ({_error(error)}); promotions of this run rolled back")
        _roll_back(record, registry, step)


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


def _write_report(
    record: RunRecord,
    info: SnapshotInfo,
    config: TrainingConfig,
    panel: Panel,
    challengers: dict[str, Trained],
    reports_root: Path | None,
) -> str | None:
    """The training report of the models trained in this run (reused models have theirs from their own run)."""
    results = [t.result for t in challengers.values() if t.result is not None]
    failures = {n: m["error"] for n, m in record.models.items() if m["status"] == "failed"}
    if not results and not failures:
        return None
    from training.report import write_report

    run = TrainingRun(
        run_id=f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{info.id[:8]}-retrain",
        snapshot=info,
        config=config,
        results=results,
        failures=failures,
    )
    root = reports_root or DataSettings().home / "reports"
    return str(write_report(run, panel, root / run.run_id) / "index.html")


# ---------------------------------------------------------------------------------------------- artifacts


def _pooled(metadata: dict[str, Any] | None) -> tuple[str, float | None, str]:
    """(primary metric, its pooled value, best baseline as text) from a card."""
    if not metadata or "primary_metric" not in metadata:
        return "", None, ""
    metric = str(metadata["primary_metric"])
    baselines = {b: m[metric] for b, m in metadata.get("baseline_metrics", {}).items() if metric in m}
    if not baselines:
        return metric, metadata.get("metrics", {}).get(metric), ""
    pick = max if metadata.get("higher_is_better") else min
    best = pick(baselines, key=lambda b: baselines[b])
    return metric, metadata.get("metrics", {}).get(metric), f"{best} {baselines[best]:.5g}"


def model_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: its metric against production's and the best baseline's, and what became of it."""
    rows = []
    for name, outcome in summary["models"].items():
        gate_record = summary["gate"].get(name, {})
        tag = outcome.get("tag")
        production = gate_record.get("production") or summary["production_before"].get(name)
        metric, ours, baseline = _pooled(_metadata(tag))
        _, theirs, _ = _pooled(_metadata(production)) if production else ("", None, "")
        if outcome["status"] == "failed":
            decision = "training failed"
        elif gate_record.get("unchanged"):
            decision = "already production"
        elif name in summary["rolled_back"]:
            decision = "promoted, rolled back"
        elif name in summary["promoted"]:
            decision = "promoted"
        elif name in summary["rejected"]:
            decision = "rejected"
        else:
            decision = "passed, not promoted" if gate_record.get("passed") else "not gated"
        reasons = [f"{c['rule']}: {c['detail']}" for c in gate_record.get("checks", []) if not c["passed"]]
        rows.append(
            {
                "model": name,
                "challenger": tag or "-",
                "origin": outcome["status"],
                "metric": metric,
                "challenger value": None if ours is None else round(float(ours), 6),
                "production": production or "-",
                "production value": None if theirs is None else round(float(theirs), 6),
                "best baseline": baseline,
                "decision": decision,
                "why": "; ".join(reasons) or outcome.get("error", ""),
            }
        )
    return rows


def summary_markdown(summary: dict[str, Any]) -> str:
    lines = [f"# Retrain {summary['flow_run']} ({summary['mode']} mode): {'ok' if summary['ok'] else 'FAILED'}", ""]
    for failure in summary["failures"]:
        lines.append(f"- **failed**: {failure.splitlines()[0]}")
    snap = summary.get("snapshot")
    if snap:
        lines.append(
            f"- snapshot `{snap['id']}` ({snap['source']}: {', '.join(snap['symbols'])}, "
            f"{snap['start']}..{snap['end']})"
        )
    pulled = summary.get("pull") or {}
    if pulled.get("fallback"):
        lines.append(
            f"- pull failed, used the latest snapshot `{pulled['fallback']}`: {pulled['error'].splitlines()[0]}"
        )
    validation = summary.get("validation") or {}
    for warning in validation.get("warnings", []):
        lines.append(f"- validation warning [{warning['check']}] {warning['symbol'] or ''}: {warning['message']}")
    if summary.get("lock", {}) and summary["lock"].get("held_by"):
        lines.append(
            f"- waited {summary['lock']['waited_seconds']} s for the promotion lock ({summary['lock']['held_by']})"
        )
    smoke = summary.get("smoke_test")
    if summary["bento"]:
        tested = f"every method answered, ready in {smoke['ready_seconds']} s" if smoke else "FAILED, do not serve it"
        lines.append(f"- Bento `{summary['bento']}`: smoke test {tested}")
    else:
        lines.append("- Bento: none built" + (" (the build failed)" if summary["promoted"] else " (nothing promoted)"))
    if summary.get("report"):
        lines.append(f"- training report: [{summary['report']}](file://{summary['report']})")
    lines += ["", "## Gate decisions (rules: " + summary["rules"] + ")", ""]
    for name, decision in summary["gate"].items():
        if decision.get("unchanged"):
            lines.append(f"- **{name}**: `{decision['challenger']}` is already production")
            continue
        verdict = "pass" if decision["passed"] else "REJECT"
        lines.append(
            f"- **{name}** `{decision['challenger']}` vs `{decision['production'] or 'no production'}`: {verdict}"
        )
        lines += [f"  - {'ok' if c['passed'] else 'FAIL'} {c['rule']}: {c['detail']}" for c in decision["checks"]]
    return "\n".join(lines)


def publish_artifacts(summary: dict[str, Any]) -> None:
    """The run's story as Prefect artifacts: the model table, the decisions, the Bento, the report."""
    if summary["models"]:
        create_table_artifact(model_table(summary), key="retrain-models", description="Challengers vs production")
    create_markdown_artifact(summary_markdown(summary), key="retrain-summary", description="What the run did")
    if summary.get("report"):
        create_link_artifact(
            f"file://{summary['report']}", link_text="training report", key="retrain-report", description="HTML"
        )


# ------------------------------------------------------------------------------------------------------ CLI

retrain_app = typer.Typer(help="Retrain, gate, promote and rebuild with Prefect (once, or on a schedule).")


@retrain_app.command("run")
def run_command(
    quick: Annotated[bool, typer.Option(help="Quick training mode (small models, two test years).")] = False,
    source: Annotated[str, typer.Option(help="embedded (offline) or yfinance.")] = "embedded",
    ticker: Annotated[list[str] | None, typer.Option("--ticker", "-t", help="yfinance ticker (repeat).")] = None,
    start: Annotated[str | None, typer.Option(help="First date to pull (yfinance).")] = None,
    snapshot: Annotated[str | None, typer.Option(help="Train on this snapshot instead of pulling.")] = None,
    use_cached_on_failure: Annotated[
        bool, typer.Option(help="If the pull fails, train on the latest cached snapshot instead of failing.")
    ] = False,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model(s) to retrain; all by default.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Retrain even models the store already has for this snapshot.")] = False,
    rules: Annotated[Path | None, typer.Option(help="TOML file overriding keys of training/gate_rules.toml.")] = None,
    workers: Annotated[int | None, typer.Option(help="Models trained at once (threads).")] = None,
    containerize: Annotated[bool, typer.Option(help="Not implemented in this issue; see issue 6.")] = False,
) -> None:
    """Run the flow once, here, and print what it did."""
    from rich.console import Console

    console = Console()
    if containerize:
        console.print(f"[red]error:[/red] {CONTAINERIZE_NOT_IMPLEMENTED}")
        raise typer.Exit(2)
    console.print(
        f"retrain ({'quick' if quick else 'full'} mode): pull, validate, train, gate, promote, build, smoke-test. "
        "Prefect logs at WARNING; PREFECT_LOGGING_LEVEL=INFO shows each step."
    )
    runnable = retrain if workers is None else retrain.with_options(task_runner=thread_runner(workers))
    state = runnable(
        quick=quick,
        source=source,
        tickers=ticker,
        start=start,
        snapshot=snapshot,
        use_cached_on_failure=use_cached_on_failure,
        models=model,
        force=force,
        rules_path=rules,
        return_state=True,
    )
    outcome = state.result(raise_on_failure=False)
    summary = outcome.summary if isinstance(outcome, RetrainFailed) else outcome
    if not isinstance(summary, dict):
        console.print(f"[red]the flow failed before it could report:[/red] {outcome}")
        raise typer.Exit(1)
    print_summary(console, summary)
    if state.is_failed():
        raise typer.Exit(1)


def print_summary(console: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table("model", "origin", "metric", "challenger", "production", "best baseline", "decision")
    for row in model_table(summary):
        value = "" if row["challenger value"] is None else f"{row['challenger value']:.5g}"
        prod = "" if row["production value"] is None else f"{row['production value']:.5g}"
        table.add_row(row["model"], row["origin"], row["metric"], value, prod, row["best baseline"], row["decision"])
    console.print(table)
    console.print(summary_markdown(summary), markup=False, highlight=False)


@retrain_app.command("serve")
def serve_command_(
    name: Annotated[str | None, typer.Option(help="Deployment name (default: MLOPS_RETRAIN_DEPLOYMENT_NAME).")] = None,
    cron: Annotated[str | None, typer.Option(help="Cron schedule (default: MLOPS_RETRAIN_CRON).")] = None,
    quick: Annotated[bool, typer.Option(help="Scheduled runs use the quick training mode.")] = False,
    source: Annotated[str, typer.Option(help="embedded or yfinance.")] = "embedded",
    ticker: Annotated[list[str] | None, typer.Option("--ticker", "-t", help="yfinance ticker (repeat).")] = None,
    use_cached_on_failure: Annotated[bool, typer.Option(help="Fall back on the latest snapshot.")] = False,
) -> None:
    """Serve the flow as a deployment on a cron schedule (no work pool needed); Ctrl-C stops it.

    The schedule fires against a Prefect server (``prefect server start``, then ``PREFECT_API_URL`` in both shells).
    Without one, runs start when triggered with ``prefect deployment run`` from a shell with the same PREFECT_HOME.
    """
    settings = RetrainSettings()
    deployment = name or settings.deployment_name
    typer.echo(
        f"serving {FLOW_NAME}/{deployment} on '{cron or settings.cron}'. "
        f"Trigger a run now with: prefect deployment run '{FLOW_NAME}/{deployment}'"
    )
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # from the environment or the active Prefect profile
        typer.echo(
            "No PREFECT_API_URL: the temporary local API has no scheduler, so the cron schedule will not fire; "
            "triggered runs still do. For the schedule: `prefect server start`, then "
            "`export PREFECT_API_URL=http://127.0.0.1:4200/api` here and where you trigger runs."
        )
    retrain.serve(
        name=deployment,
        cron=cron or settings.cron,
        parameters={
            "quick": quick,
            "source": source,
            "tickers": ticker,
            "use_cached_on_failure": use_cached_on_failure,
        },
    )


if __name__ == "__main__":
    from training.flows import retrain_app as app  # the importable module, not a second copy as __main__

    app()
