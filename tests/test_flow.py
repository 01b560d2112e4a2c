"""The retrain flow with a real local Prefect API, on the embedded data in quick mode.

Training is the expensive step, so the flow's own cache does the sharing: the session's quick run is saved once
more under the flow's training key (what the flow itself would have trained on this snapshot with this code and
config), and every run finds those models instead of training them again. Each test has its own registry, so
production is never shared between tests; models that a test must train are taken out of the cache explicitly.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest
from prefect.artifacts import Artifact
from prefect.states import State
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from data.snapshots import SnapshotInfo, SnapshotStore
from data.sources import YFinanceSource
from training import flows, smoke
from training.bento import build_context
from training.config import TrainingConfig
from training.registry import Registry
from training.run import TrainingRun, trainer_class
from training.store import MODEL_NAMES, Stage, get_model
from training.validation import SanityThresholds, validate_snapshot

pytestmark = pytest.mark.integration

QUICK = TrainingConfig.quick()


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API (SQLite) for the whole session: its start costs ~15 s."""
    with prefect_test_harness(server_startup_timeout=120):
        yield


def save_copy(run: TrainingRun, name: str, labels: dict[str, str], **card_changes: Any) -> str:
    """A new stored version of a quick-run model (card optionally changed): the shared fixtures stay untouched."""
    result = next(r for r in run.results if r.name == name)
    trainer = trainer_class(name)(QUICK)
    metadata = result.card.model_copy(update=card_changes).to_metadata()
    return str(trainer.save(result.fitted, metadata, {"task": trainer.task, "stage": Stage.CANDIDATE, **labels}).tag)


@pytest.fixture(scope="session")
def challengers(quick_run: TrainingRun, embedded_snapshot: tuple[SnapshotStore, SnapshotInfo]) -> dict[str, str]:
    """The quick run's six models saved under the flow's training key: the flow reuses them instead of training."""
    assert quick_run.ok, quick_run.failures
    key = flows.training_key(embedded_snapshot[1].id, QUICK)
    return {name: save_copy(quick_run, name, key.labels()) for name in MODEL_NAMES}


@pytest.fixture(scope="session")
def earlier_production(quick_run: TrainingRun) -> dict[str, str]:
    """Other versions of the same six models, without a training key: a production to replace."""
    return {name: save_copy(quick_run, name, {}) for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_context(tmp_path_factory.mktemp("bento-context"))


@pytest.fixture
def run_flow(
    prefect_api: None, embedded_snapshot: tuple[SnapshotStore, SnapshotInfo], context: Path, tmp_path: Path
) -> Callable[..., tuple[State, dict[str, Any]]]:
    """Run the flow in quick mode on the session's snapshot store; return its final state and summary."""

    def run(**parameters: Any) -> tuple[State, dict[str, Any]]:
        arguments = {
            "quick": True,
            "snapshot_dir": embedded_snapshot[0].root,
            "registry_root": tmp_path / "registry",
            "reports_root": tmp_path / "reports",
            "build_context": context,
            **parameters,
        }
        state = flows.retrain(**arguments, return_state=True)
        outcome = state.result(raise_on_failure=False)
        summary = outcome.summary if isinstance(outcome, flows.RetrainFailed) else outcome
        assert isinstance(summary, dict), outcome
        return state, summary

    return run


def registry_with(tmp_path: Path, tags: dict[str, str]) -> Registry:
    registry = Registry(tmp_path / "registry")
    registry.promote(list(tags.values()), reason="test setup")
    return registry


def bento_tags() -> set[str]:
    return {str(b.tag) for b in bentoml.bentos.list()}


def model_tags() -> set[str]:
    return {str(m.tag) for m in bentoml.models.list()}


@pytest.fixture(scope="module")
def first_run(
    prefect_api: None,
    challengers: dict[str, str],
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
    context: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[State, dict[str, Any], Registry]:
    """A full run against an empty registry: every challenger passes its baselines' rules, is promoted and built."""
    root = tmp_path_factory.mktemp("first-run")
    registry = Registry(root / "registry")
    state = flows.retrain(
        quick=True,
        snapshot_dir=embedded_snapshot[0].root,
        registry_root=registry.root,
        reports_root=root / "reports",
        build_context=context,
        return_state=True,
    )
    return state, state.result(raise_on_failure=False), registry


# ---------------------------------------------------------------------------------------------- full runs


def test_full_run_promotes_builds_and_the_bento_answers(
    first_run: tuple[State, dict[str, Any], Registry], challengers: dict[str, str]
) -> None:
    state, summary, registry = first_run
    assert state.is_completed(), state.message
    assert summary["ok"] and summary["failures"] == []
    assert summary["pull"]["ok"] and summary["validation"]["usable"]
    assert {n: m["status"] for n, m in summary["models"].items()} == dict.fromkeys(MODEL_NAMES, "cached")
    assert summary["promoted"] == challengers == registry.production()
    assert all(get_model(tag).labels["stage"] == Stage.PRODUCTION for tag in challengers.values())
    assert all(d["passed"] and d["production"] is None for d in summary["gate"].values())
    rules = {c["rule"] for c in summary["gate"]["volatility_lightgbm"]["checks"]}
    assert rules == {"card_complete", "feature_spec", "leakage_audit", "beats_baselines"}  # no production yet
    bento = bentoml.get(summary["bento"])
    shipped = json.loads((Path(bento.path) / "src" / "bentos" / "production.json").read_text())["models"]
    assert shipped == challengers
    smoke = summary["smoke_test"]
    assert smoke["bento"] == summary["bento"]
    assert set(smoke["milliseconds"]) == {
        "predict_return[lightgbm]",
        "predict_return[random_forest]",
        "predict_direction",
        "predict_volatility",
        "detect_regime",
        "forecast_price",
        "predict_all",
        "predict_all_batch",
        "models",
    }
    run_id = state.state_details.flow_run_id
    table = Artifact.get("retrain-models")
    assert table is not None and table.flow_run_id == run_id
    rows = json.loads(str(table.data))
    assert {r["model"]: r["decision"] for r in rows} == dict.fromkeys(MODEL_NAMES, "promoted")
    markdown = Artifact.get("retrain-summary")
    assert markdown is not None and summary["bento"] in str(markdown.data)


def test_rerun_on_unchanged_snapshot_trains_and_builds_nothing(
    first_run: tuple[State, dict[str, Any], Registry],
    run_flow: Callable[..., tuple[State, dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, _, registry = first_run
    before = (model_tags(), bento_tags(), registry.production(), len(registry.history()))

    def no_training(*args: Any) -> None:
        raise AssertionError("an unchanged snapshot must not train anything")

    monkeypatch.setattr(flows, "train_one", no_training)
    state, summary = run_flow(registry_root=registry.root)
    assert state.is_completed(), state.message
    assert {m["status"] for m in summary["models"].values()} == {"cached"}
    assert summary["promoted"] == {} and summary["bento"] is None and summary["smoke_test"] is None
    assert all(d.get("unchanged") for d in summary["gate"].values())
    assert (model_tags(), bento_tags(), registry.production(), len(registry.history())) == before


def test_one_trainer_failing_leaves_the_others_promoted(
    run_flow: Callable[..., tuple[State, dict[str, Any]]],
    challengers: dict[str, str],
    earlier_production: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    registry = registry_with(tmp_path, earlier_production)
    retrained = {"direction_lightgbm", "regime_hmm"}  # out of the cache: the first raises, the second trains
    cached = flows.find_trained
    monkeypatch.setattr(flows, "find_trained", lambda name, key: None if name in retrained else cached(name, key))

    def broken(self: Any, panel: Any) -> Any:
        raise RuntimeError("disk full while evaluating")

    monkeypatch.setattr(trainer_class("direction_lightgbm"), "evaluate", broken)
    state, summary = run_flow()
    assert state.is_failed()
    assert "direction_lightgbm failed to train: RuntimeError: disk full while evaluating" in str(state.message)
    assert summary["models"]["direction_lightgbm"]["status"] == "failed"
    assert summary["models"]["regime_hmm"]["status"] == "trained"
    production = registry.production()
    assert production["direction_lightgbm"] == earlier_production["direction_lightgbm"]
    fresh = summary["models"]["regime_hmm"]["tag"]
    request.addfinalizer(lambda: bentoml.models.delete(fresh))  # the other tests expect the session's challengers
    assert fresh not in challengers.values() and production["regime_hmm"] == fresh
    for name in MODEL_NAMES:
        if name not in retrained:
            assert production[name] == challengers[name]
    key = flows.training_key(summary["snapshot"]["id"], QUICK)
    assert cached("regime_hmm", key) == fresh  # the freshly trained model joins the cache
    assert summary["smoke_test"] is not None and summary["bento"]
    report = Path(summary["report"]).read_text()
    assert "direction_lightgbm failed" in report and "regime_hmm" in report


def test_a_worse_challenger_is_not_promoted_and_is_labelled_rejected(
    run_flow: Callable[..., tuple[State, dict[str, Any]]],
    quick_run: TrainingRun,
    challengers: dict[str, str],
    tmp_path: Path,
) -> None:
    card = next(r.card for r in quick_run.results if r.name == "volatility_lightgbm")
    walk_forward = json.loads(json.dumps(card.walk_forward))
    for fold in walk_forward["per_fold"]:
        fold["metrics"]["mse"] *= 0.8  # production forecast volatility 20 % better on the same test years
    better = save_copy(quick_run, "volatility_lightgbm", {}, walk_forward=walk_forward)
    production = {**challengers, "volatility_lightgbm": better}
    registry = registry_with(tmp_path, production)
    state, summary = run_flow()
    assert state.is_completed(), state.message  # a rejection is the gate working, not a failure
    assert summary["rejected"] == {"volatility_lightgbm": challengers["volatility_lightgbm"]}
    assert summary["promoted"] == {} and summary["bento"] is None
    assert registry.production() == production
    assert get_model(challengers["volatility_lightgbm"]).labels["stage"] == Stage.REJECTED
    (check,) = [c for c in summary["gate"]["volatility_lightgbm"]["checks"] if not c["passed"]]
    assert check["rule"] == "versus_production"
    assert "mse" in check["detail"] and "worse by" in check["detail"]
    assert "2017-01-01..2017-12-31, 2018-01-01..2018-12-31" in check["detail"]


def test_stricter_rules_from_a_file_reject_the_regime_model(
    run_flow: Callable[..., tuple[State, dict[str, Any]]],
    challengers: dict[str, str],
    earlier_production: dict[str, str],
    tmp_path: Path,
) -> None:
    rules = tmp_path / "strict.toml"
    rules.write_text("[quick]\nregime_min_label_agreement = 0.99\n")
    production = {**challengers, "regime_hmm": earlier_production["regime_hmm"]}
    registry = registry_with(tmp_path, production)
    state, summary = run_flow(rules_path=rules)
    assert state.is_completed(), state.message
    assert summary["rejected"] == {"regime_hmm": challengers["regime_hmm"]}
    assert registry.production() == production
    reasons = [c["detail"] for c in summary["gate"]["regime_hmm"]["checks"] if not c["passed"]]
    assert reasons and "below the floor 0.990" in reasons[0]


def test_smoke_test_failure_rolls_the_promotions_back(
    run_flow: Callable[..., tuple[State, dict[str, Any]]],
    challengers: dict[str, str],
    earlier_production: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = registry_with(tmp_path, earlier_production)
    real_call = smoke.call_endpoint
    calls: list[str] = []

    def failing_volatility(url: str, method: str, body: dict[str, Any]) -> Any:
        calls.append(method)
        if method == "predict_volatility":
            raise smoke.SmokeTestError("predict_volatility answered HTTP 500: injected")
        return real_call(url, method, body)

    monkeypatch.setattr(smoke, "call_endpoint", failing_volatility)
    state, summary = run_flow()
    assert state.is_failed()
    assert "smoke test failed" in str(state.message) and "injected" in str(state.message)
    assert calls[:2] == ["predict_return", "predict_return"]  # the Bento was really served and answered
    assert summary["promoted"] == challengers
    assert summary["rolled_back"] == earlier_production
    assert registry.production() == earlier_production
    assert all(get_model(tag).labels["stage"] == Stage.REJECTED for tag in challengers.values())
    assert [e["action"] for e in registry.history()] == ["promote", "promote", "rollback"]


# ------------------------------------------------------------------------------------------ data failures


def fake_source(monkeypatch: pytest.MonkeyPatch, download: Callable[..., pd.DataFrame | None]) -> list[str]:
    """Route the flow's yfinance source through ``download`` (no network) and record the tickers asked for."""
    asked: list[str] = []
    real = flows.make_source

    def recording(ticker: str, **kwargs: Any) -> pd.DataFrame | None:
        asked.append(ticker)
        return download(ticker, **kwargs)

    def make(*args: Any) -> Any:
        source = real(*args)
        assert isinstance(source, YFinanceSource)
        return dataclasses.replace(source, download=recording, sleep=lambda seconds: None)

    monkeypatch.setattr(flows, "make_source", make)
    return asked


def offline(ticker: str, **kwargs: Any) -> pd.DataFrame:
    return pd.DataFrame()  # what yf.download returns when it cannot reach Yahoo


def test_yfinance_failure_fails_the_run_naming_the_tickers(
    run_flow: Callable[..., tuple[State, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked = fake_source(monkeypatch, offline)
    state, summary = run_flow(source="yfinance", tickers=["SPY", "QQQ"], snapshot_dir=tmp_path / "snapshots")
    assert state.is_failed()
    assert "no bars for SPY, QQQ" in str(state.message)
    assert "--use-cached-on-failure" in summary["failures"][0]
    assert set(asked) == {"SPY", "QQQ"} and len(asked) == 2 * 3  # every attempt, no sleeping
    assert summary["models"] == {} and summary["snapshot"] is None


def test_yfinance_failure_with_use_cached_on_failure_trains_on_the_latest_snapshot(
    run_flow: Callable[..., tuple[State, dict[str, Any]]],
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
    challengers: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(ticker: str, **kwargs: Any) -> pd.DataFrame:
        raise ConnectionError("connection reset by peer")

    fake_source(monkeypatch, unreachable)
    registry_with(tmp_path, challengers)
    state, summary = run_flow(source="yfinance", tickers=["SPY"], use_cached_on_failure=True)
    assert state.is_completed(), state.message
    assert summary["pull"]["ok"] is False and summary["pull"]["fallback"] == embedded_snapshot[1].id
    assert "no bars for SPY" in summary["pull"]["error"] and "connection reset" in summary["pull"]["error"]
    assert summary["snapshot"]["id"] == embedded_snapshot[1].id
    assert {m["status"] for m in summary["models"].values()} == {"cached"}


def test_an_unusable_snapshot_fails_the_run_with_the_report(
    run_flow: Callable[..., tuple[State, dict[str, Any]]], embedded_bars: pd.DataFrame, tmp_path: Path
) -> None:
    bars = embedded_bars.copy()
    rows = bars.index[bars["symbol"] == "^IXIC"][4000:4012]
    bars.loc[rows, ["open", "high", "low", "close"]] = 5000.0  # a feed stuck for 12 days
    store = SnapshotStore(tmp_path / "snapshots")
    info, _ = store.write(bars, source="test")
    state, summary = run_flow(snapshot_dir=store.root, snapshot=info.id)
    assert state.is_failed()
    assert f"snapshot {info.id}" in str(state.message) and "unusable" in str(state.message)
    assert "[stale_price] ^IXIC" in summary["failures"][0]
    assert summary["models"] == {}


# ---------------------------------------------------------------------------------------------- the lock


def test_a_second_promotion_waits_then_gives_up(
    run_flow: Callable[..., tuple[State, dict[str, Any]]], challengers: dict[str, str], tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    with flows.promotion_lock(registry.root, "flow run 'first'", timeout=0):
        state, summary = run_flow(lock_timeout_seconds=1.0)
    assert state.is_failed()
    message = str(state.message)
    assert "gave up after 1 s waiting for the promotion lock" in message and "flow run 'first'" in message
    assert summary["promoted"] == {} and summary["gate"] == {} and registry.production() == {}


def test_a_second_promotion_waits_for_the_first_and_says_so(
    run_flow: Callable[..., tuple[State, dict[str, Any]]],
    challengers: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = registry_with(tmp_path, challengers)
    held, waiting = threading.Event(), threading.Event()
    holder_of = flows._lock_holder

    def seen_waiting(handle: Any) -> str:  # only called while the lock is taken, by the run that waits
        waiting.set()
        return holder_of(handle)

    monkeypatch.setattr(flows, "_lock_holder", seen_waiting)

    def first_run() -> None:
        with flows.promotion_lock(registry.root, "flow run 'first'", timeout=0):
            held.set()
            waiting.wait(60)
            time.sleep(1.0)

    holder = threading.Thread(target=first_run)
    holder.start()
    assert held.wait(10)
    started = time.monotonic()
    state, summary = run_flow()
    holder.join()
    assert state.is_completed(), state.message
    assert summary["lock"]["held_by"].startswith("flow run 'first'")
    assert 1.0 <= summary["lock"]["waited_seconds"] <= time.monotonic() - started
    assert summary["promoted"] == {} and registry.production() == challengers


# -------------------------------------------------------------------------------------- entry points


def test_containerize_is_refused_not_faked(run_flow: Callable[..., tuple[State, dict[str, Any]]]) -> None:
    state = flows.retrain(containerize=True, return_state=True)
    assert state.is_failed() and "see issue 6" in str(state.message)
    result = CliRunner().invoke(flows.retrain_app, ["run", "--containerize"])
    assert result.exit_code == 2 and "see issue 6" in result.output


def test_code_version_ignores_orchestration_modules() -> None:
    version = flows.code_version()
    assert version == flows.code_version() and len(version) == 16
    assert {"flows", "gate", "validation"} <= flows.ORCHESTRATION_MODULES
    assert "lgbm" not in flows.ORCHESTRATION_MODULES and "trainer" not in flows.ORCHESTRATION_MODULES


# ----------------------------------------------------------------------------------- snapshot validation


def test_the_embedded_data_passes_every_sanity_check(embedded_bars: pd.DataFrame) -> None:
    report = validate_snapshot(embedded_bars, "embedded")
    assert report.usable and report.findings == []
    without_closures = validate_snapshot(embedded_bars, "embedded", SanityThresholds(known_closures=()))
    assert [(f.check, f.symbol, f.date) for f in without_closures.warnings] == [
        ("gap", "^GSPC", "2001-09-17"),
        ("gap", "^IXIC", "2001-09-17"),
    ]


def symbol_bars(embedded_bars: pd.DataFrame, symbol: str = "^GSPC") -> pd.DataFrame:
    return embedded_bars[embedded_bars["symbol"] == symbol].reset_index(drop=True)


def test_gaps_warn_then_fail(embedded_bars: pd.DataFrame) -> None:
    bars = symbol_bars(embedded_bars)
    three = bars.drop(index=range(1000, 1003))  # the sessions of 2002-12-26, -27 and -30
    (finding,) = validate_snapshot(three).findings
    assert (finding.check, finding.severity, finding.date) == ("gap", "warning", "2002-12-31")
    assert finding.value == 4.0  # three sessions and Christmas Day
    month = bars.drop(index=range(1000, 1021))  # 21 sessions, and the holidays between them
    (finding,) = validate_snapshot(month).findings
    assert finding.severity == "error" and finding.value == 24.0
    assert finding.message == "24 business days without a bar between 2002-12-24 and 2003-01-28"


def test_stale_prices_warn_then_fail(embedded_bars: pd.DataFrame) -> None:
    bars = symbol_bars(embedded_bars)
    price = float(bars.loc[2000, "close"])
    for stuck, severity in ((4, "warning"), (11, "error")):
        frozen = bars.copy()
        frozen.loc[2000 : 2000 + stuck, ["open", "high", "low", "close"]] = price
        stale = [f for f in validate_snapshot(frozen).findings if f.check == "stale_price"]
        assert [(f.severity, f.value) for f in stale] == [(severity, float(stuck))]


def test_implausible_jumps_warn_then_fail(embedded_bars: pd.DataFrame) -> None:
    bars = symbol_bars(embedded_bars)
    for factor, severity in ((1.2, "warning"), (2.0, "error")):  # +18 %, then an unadjusted 2:1 split
        jumped = bars.copy()
        jumped.loc[3000:, ["open", "high", "low", "close"]] *= factor
        (finding,) = validate_snapshot(jumped).findings
        assert (finding.check, finding.severity) == ("jump", severity)
        assert finding.value == pytest.approx(np.log(factor), abs=0.02)


def test_contract_violations_and_short_histories_make_a_snapshot_unusable(embedded_bars: pd.DataFrame) -> None:
    bars = symbol_bars(embedded_bars).assign(symbol="^GSPC")
    broken = bars.copy()
    broken.loc[17, "low"] = -1.0
    report = validate_snapshot(broken, "x")
    assert not report.usable and report.errors[0].check == "ohlcv_contract"
    assert "low=-1.0 must be > 0" in report.render()
    short = validate_snapshot(bars.iloc[:100])
    assert [f.check for f in short.errors] == ["too_few_bars"]


def test_thresholds_must_warn_before_they_fail() -> None:
    with pytest.raises(ValueError, match=r"jump: the warning threshold 0\.6 is above the error threshold 0\.5"):
        SanityThresholds(jump_warn_log_return=0.6)
