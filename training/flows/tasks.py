"""The Prefect tasks of the retrain flow (training/flows/retrain.py): pull, validate, build the panel, train one model,
gate, build the Bento, smoke-test it. Each does one step; the flow decides what a failure means."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from distributed import Client, get_worker, worker_client
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from cluster import ClusterSettings, connect, scheduler_address
from data.pull import PullError, pull
from data.quality import SanityThresholds, SnapshotUnusableError, validate_snapshot
from data.snapshots import SnapshotInfo, SnapshotStore
from data.sources import EmbeddedSource, Source, YFinanceSource
from deploy.bento import build as build_bento_from
from deploy.smoke import smoke_test
from features.ohlcv import OHLCVValidationError
from monitoring.shadow import live_comparison
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.flows.cache import TrainingKey, find_trained, record_training_key
from training.flows.gate import Decision, RuleSet, gate
from training.flows.gate_quant import Check
from training.flows.summary import stored_metadata
from training.models.execution import Execution
from training.registry.store import get_model
from training.run import ModelResult, train_one


@contextmanager
def cluster_client(scheduler: str | None) -> Iterator[Client | None]:
    """The client a task submits its own tasks with: on a Dask worker (the flow on ``DaskTaskRunner``), the worker's
    (``worker_client`` secedes from the worker's thread, so a single-threaded worker runs the sub-tasks meanwhile);
    elsewhere a client of ``scheduler`` (or ``MLOPS_DASK_SCHEDULER``: a served deployment's runs), or None (in this
    process) without one."""
    try:
        get_worker()
    except ValueError:  # not on a worker
        address = scheduler_address(scheduler)
        if address is None:
            yield None
        else:
            with connect(ClusterSettings(scheduler=address)) as client:
                yield client
        return
    with worker_client() as client:
        yield client


@dataclass
class Trained:
    """A challenger: freshly trained in this run, or reused from the store (same snapshot, code, config)."""

    name: str
    tag: str
    origin: Literal["trained", "cached"]
    seconds: float
    result: ModelResult | None = field(default=None, repr=False)


def make_source(
    kind: str,
    tickers: list[str],
    start: str | None,
    end: str | None,
    synthetic: tuple[int, float, int] = (200, 15.0, 0),
) -> Source:
    """The source a run pulls from: for yfinance, retries, backoff and the overall deadline come from
    ``MLOPS_YFINANCE_*`` (data/settings.py); a synthetic universe (symbols, years, seed) is for scale runs only."""
    if kind == "embedded":
        return EmbeddedSource()
    if kind == "synthetic":
        from data.synthetic import SyntheticSource

        symbols, years, seed = synthetic
        return SyntheticSource(symbols=int(symbols), years=float(years), seed=int(seed))
    if kind != "yfinance":
        raise ValueError(f"unknown source {kind!r}: embedded, yfinance or synthetic")
    return YFinanceSource.from_settings(tickers, start, end)


def universe(source: Source) -> list[str]:
    """The symbols a source was asked for."""
    named = getattr(source, "tickers", None) or getattr(source, "symbols", None)
    if isinstance(named, list | tuple):
        return sorted(str(s) for s in named)
    described = source.describe()
    return sorted(str(s) for s in described.get("tickers") or described.get("symbols") or [])


class PullFailed(RuntimeError):
    """The pull failed and the run was not asked to fall back, or had no snapshot of the universe to fall back on."""


def latest_of(store: SnapshotStore, symbols: list[str]) -> SnapshotInfo | None:
    """The newest snapshot of exactly these symbols, if any."""
    same = [s for s in store.snapshots() if sorted(s.symbols) == symbols]
    return same[-1] if same else None


@task(name="pull", cache_policy=NO_CACHE)
def pull_snapshot(
    store: SnapshotStore, source: Source, use_cached_on_failure: bool
) -> tuple[SnapshotInfo, dict[str, Any]]:
    """Pull into a snapshot (the source retries within its overall deadline). If that fails, fall back on the
    latest snapshot of the same symbols only when asked: training on other symbols would not be what was asked."""
    started = time.perf_counter()
    try:
        info, new = pull(source, store)
    except (PullError, OHLCVValidationError) as error:
        message = f"{source.name} pull failed: {error}" if isinstance(error, OHLCVValidationError) else str(error)
        if not use_cached_on_failure:
            raise PullFailed(
                f"{message}\nNothing was trained. To train on the latest cached snapshot of the same symbols "
                "instead, rerun with --use-cached-on-failure (use_cached_on_failure=True)."
            ) from error
        symbols = universe(source)
        fallback = latest_of(store, symbols)
        if fallback is None:
            raise PullFailed(
                f"{message}\nand no cached snapshot of {', '.join(symbols)} to fall back on; nothing was trained"
            ) from error
        get_run_logger().warning(f"{message.splitlines()[0]}; proceeding on the latest snapshot {fallback.id}")
        seconds = round(time.perf_counter() - started, 2)
        return fallback, {"ok": False, "error": message, "fallback": fallback.id, "seconds": seconds}
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
def build_training_panel(
    store: SnapshotStore, info: SnapshotInfo, config: TrainingConfig, scheduler: str | None = None
) -> Panel:
    """The pooled panel; each symbol's features a task on the run's cluster when there is one."""
    with cluster_client(scheduler) as client:
        return build_panel(store, info, config.horizon, config.first_date, client=client)


@task(name="train", task_run_name="train-{name}", cache_policy=NO_CACHE)
def train_model(
    name: str, panel: Panel, config: TrainingConfig, key: TrainingKey, force: bool, scheduler: str | None = None
) -> Trained:
    """Reuse the store's model trained under ``key``, or evaluate, fit, audit and save a new one (its folds, symbols
    or refits as tasks on the run's cluster when there is one, ``training/models/execution.py``)."""
    started = time.perf_counter()
    if not force and (tag := find_trained(name, key)) is not None:
        return Trained(name, tag, "cached", round(time.perf_counter() - started, 2))
    with cluster_client(scheduler) as client:
        execution = Execution(client)
        try:
            result = train_one(name, panel, config, execution)
        finally:
            execution.release()
    record_training_key(result.tag, key)
    return Trained(name, result.tag, "trained", round(time.perf_counter() - started, 2), result)


@task(name="gate", cache_policy=NO_CACHE)
def gate_challengers(challengers: dict[str, str], production: dict[str, str], rules: RuleSet) -> dict[str, Decision]:
    """The gate's decision on every challenger that is not already production, with how it did against production
    on the live dates production answered, when the prediction store has them (``live_dates``, informational)."""
    decisions = {
        name: gate(tag, get_model(tag).metadata, rules, production.get(name), stored_metadata(production.get(name)))
        for name, tag in challengers.items()
        if production.get(name) != tag
    }
    for name, decision in decisions.items():
        if decision.production is None:
            continue
        try:
            live = live_comparison(name, decision.challenger, decision.production)
        except Exception as error:  # the prediction store is the monitor's: its trouble never blocks a retrain
            live = {"detail": f"not compared: {type(error).__name__}: {error}", "values": {}}
        if live is not None:
            decision.checks.append(Check("live_dates", True, live["detail"], live["values"]))
    return decisions


@task(name="build-bento", cache_policy=NO_CACHE)
def build_bento(production: dict[str, str], context: Path) -> str:
    return build_bento_from(production, context)


@task(name="smoke-test", cache_policy=NO_CACHE)
def smoke_test_bento(bento_tag: str, production: dict[str, str], timeout: float) -> dict[str, Any]:
    return smoke_test(bento_tag, production, timeout)
