"""The retrain flow with a real local Prefect API, on the embedded data in quick mode.

The module's first run trains all six models in the flow, promotes them into an empty registry, builds the Bento
and smoke-tests it. Its models are labelled with the flow's training key, so every later run finds them in the store
instead of training again (the flow's own cache); models a test must train are taken out of the cache explicitly.
Each test has its own registry, so production is never shared between tests. The session's quick training run
(tests/conftest.py) provides other versions of the same models, to stand for an earlier production.

Over 400 lines because the tests share one Prefect API and the flow's first, expensive run (module fixtures): split
across files, each file would start and train its own.
"""

from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml
import pandas as pd
import pytest
from distributed import Client, get_task_stream
from prefect.artifacts import Artifact
from prefect.states import State
from rich.console import Console
from typer.testing import CliRunner

from cli import retrain as retrain_cli
from data.snapshots import SnapshotInfo, SnapshotStore
from data.sources import EMBEDDED_SYMBOLS, YFinanceSource
from deploy import smoke
from deploy.bento import build_context
from training.config import TrainingConfig
from training.flows import cache as retrain_cache
from training.flows import lock as retrain_lock
from training.flows import retrain as flows
from training.flows import summary as retrain_summary
from training.flows import tasks as retrain_tasks
from training.registry.promotion import Registry
from training.registry.store import MODEL_NAMES, Stage, get_model
from training.run import TrainingRun, trainer_class

pytestmark = pytest.mark.integration

QUICK = TrainingConfig.quick()
Run = Callable[..., tuple[State, dict[str, Any]]]


def save_copy(run: TrainingRun, name: str, labels: dict[str, str], **card_changes: Any) -> str:
    """A new stored version of a quick-run model (card optionally changed): the shared fixtures stay untouched."""
    result = next(r for r in run.results if r.name == name)
    trainer = trainer_class(name)(QUICK)
    metadata = result.card.model_copy(update=card_changes).to_metadata()
    return str(trainer.save(result.fitted, metadata, {"task": trainer.task, "stage": Stage.CANDIDATE, **labels}).tag)


@pytest.fixture(scope="session")
def earlier_production(quick_run: TrainingRun) -> dict[str, str]:
    """Other versions of the same six models, without a training key: a production to replace."""
    assert quick_run.ok, quick_run.failures
    return {name: save_copy(quick_run, name, {}) for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_context(tmp_path_factory.mktemp("bento-context"))


def outcome_of(state: State) -> dict[str, Any]:
    outcome = state.result(raise_on_failure=False)
    summary = outcome.summary if isinstance(outcome, retrain_summary.RetrainFailed) else outcome
    assert isinstance(summary, dict), outcome
    return summary


@pytest.fixture
def run_flow(
    prefect_api: None, embedded_snapshot: tuple[SnapshotStore, SnapshotInfo], context: Path, tmp_path: Path
) -> Run:
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
        return state, outcome_of(state)

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
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
    context: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[State, dict[str, Any], Registry]:
    """The whole flow against an empty registry: pull, validate, train all six, gate, promote, build, smoke-test."""
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
    return state, outcome_of(state), registry


@pytest.fixture(scope="module")
def challengers(first_run: tuple[State, dict[str, Any], Registry]) -> dict[str, str]:
    """The six models the first run trained: what every later run on this snapshot finds in its cache."""
    state, summary, _ = first_run
    assert state.is_completed(), state.message
    return {name: model["tag"] for name, model in summary["models"].items()}


# ---------------------------------------------------------------------------------------------- full runs


def test_full_run_trains_promotes_builds_and_the_bento_answers(
    first_run: tuple[State, dict[str, Any], Registry],
    challengers: dict[str, str],
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
) -> None:
    state, summary, registry = first_run
    assert state.is_completed(), state.message
    assert summary["ok"] and summary["failures"] == []
    assert summary["pull"]["ok"] and summary["validation"]["usable"]
    assert {n: m["status"] for n, m in summary["models"].items()} == dict.fromkeys(MODEL_NAMES, "trained")
    assert summary["promoted"] == challengers == registry.production()
    assert all(get_model(tag).labels["stage"] == Stage.PRODUCTION for tag in challengers.values())
    key = flows.training_key(embedded_snapshot[1].id, QUICK)
    assert {n: retrain_cache.find_trained(n, key) for n in MODEL_NAMES} == challengers
    assert all(d["passed"] and d["production"] is None for d in summary["gate"].values())
    rules = {c["rule"] for c in summary["gate"]["volatility_lightgbm"]["checks"]}
    assert rules == {
        "card_complete",
        "feature_spec",
        "leakage_audit",
        "beats_baselines",
        "skill_over_baseline",
        "ic_evidence",
    }
    bento = bentoml.get(summary["bento"])
    shipped = json.loads((Path(bento.path) / "src" / "bentos" / "production.json").read_text())["models"]
    assert shipped == challengers
    smoke_test = summary["smoke_test"]
    assert smoke_test["bento"] == summary["bento"]
    assert set(smoke_test["milliseconds"]) == {
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
    report = Path(summary["report"])
    assert summary["report_of_this_run"] and report.is_file() and report.name == "index.html"
    assert all(retrain_cache.report_of(tag) == str(report) for tag in challengers.values())


def test_the_artifacts_show_metrics_decisions_the_bento_and_the_report(
    first_run: tuple[State, dict[str, Any], Registry],
) -> None:
    state, summary, _ = first_run
    run_id = state.state_details.flow_run_id
    table = Artifact.get(retrain_summary.TABLE_KEY)
    assert table is not None and table.flow_run_id == run_id
    rows = {r["model"]: r for r in json.loads(str(table.data))}
    assert set(rows) == set(MODEL_NAMES) and {r["decision"] for r in rows.values()} == {"promoted"}
    volatility = rows["volatility_lightgbm"]
    card = get_model(volatility["challenger"]).metadata
    assert (volatility["metric"], volatility["challenger value"]) == ("mse", round(card["metrics"]["mse"], 6))
    best = min(card["baseline_metrics"], key=lambda b: card["baseline_metrics"][b]["mse"])
    assert volatility["best baseline"] == best
    assert volatility["baseline value"] == round(card["baseline_metrics"][best]["mse"], 6)
    assert volatility["production"] == "-" and volatility["shared folds"] is None  # nothing to compare with yet
    markdown = Artifact.get(retrain_summary.SUMMARY_KEY)
    assert markdown is not None and markdown.flow_run_id == run_id
    text = str(markdown.data)
    assert f"Bento `{summary['bento']}`: smoke test every method answered" in text
    assert "## Gate decisions" in text and "ok beats_baselines: mse" in text
    assert all(f"**{name}** `{summary['models'][name]['tag']}`" in text for name in MODEL_NAMES)
    link = Artifact.get(retrain_summary.REPORT_KEY)
    assert link is not None and link.flow_run_id == run_id and f"file://{summary['report']}" in str(link.data)


def test_the_cli_prints_the_table_and_the_summary(first_run: tuple[State, dict[str, Any], Registry]) -> None:
    _, summary, _ = first_run
    console = Console(record=True, width=220)
    retrain_cli.print_summary(console, summary)
    text = console.export_text()
    assert "vs production (same folds)" in text and "volatility_lightgbm" in text
    assert f"Bento {summary['bento']}: smoke test every method answered" in text
    assert "training report (this run)" in text


def test_rerun_on_unchanged_snapshot_trains_and_builds_nothing(
    first_run: tuple[State, dict[str, Any], Registry], run_flow: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, first, registry = first_run
    before = (model_tags(), bento_tags(), registry.production(), len(registry.history()))

    def no_training(*args: Any) -> None:
        raise AssertionError("an unchanged snapshot must not train anything")

    monkeypatch.setattr(retrain_tasks, "train_one", no_training)
    state, summary = run_flow(registry_root=registry.root)
    assert state.is_completed(), state.message
    assert {m["status"] for m in summary["models"].values()} == {"cached"}
    assert summary["promoted"] == {} and summary["bento"] is None and summary["smoke_test"] is None
    assert all(d.get("unchanged") for d in summary["gate"].values())
    assert (model_tags(), bento_tags(), registry.production(), len(registry.history())) == before
    assert summary["report"] == first["report"] and not summary["report_of_this_run"]
    text = retrain_summary.summary_markdown(summary)
    assert "nothing promoted, production unchanged" in text and "the run that trained the reused models" in text


def test_one_trainer_failing_leaves_the_others_promoted(
    run_flow: Run,
    challengers: dict[str, str],
    earlier_production: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    registry = registry_with(tmp_path, earlier_production)
    retrained = {"direction_lightgbm", "regime_hmm"}  # out of the cache: the first raises, the second trains
    cached = retrain_cache.find_trained
    monkeypatch.setattr(
        retrain_tasks, "find_trained", lambda name, key: None if name in retrained else cached(name, key)
    )

    def broken(self: Any, panel: Any) -> Any:
        raise RuntimeError("disk full while evaluating")

    monkeypatch.setattr(trainer_class("direction_lightgbm"), "evaluate_and_fit", broken)
    state, summary = run_flow()
    assert state.is_failed()
    assert "direction_lightgbm failed to train: RuntimeError: disk full while evaluating" in str(state.message)
    assert summary["models"]["direction_lightgbm"]["status"] == "failed"
    assert summary["models"]["regime_hmm"]["status"] == "trained"
    production = registry.production()
    assert production["direction_lightgbm"] == earlier_production["direction_lightgbm"]
    fresh = summary["models"]["regime_hmm"]["tag"]
    request.addfinalizer(lambda: bentoml.models.delete(fresh))  # the other tests expect the first run's models
    assert fresh not in challengers.values() and production["regime_hmm"] == fresh
    for name in MODEL_NAMES:
        if name not in retrained:
            assert production[name] == challengers[name]
    key = flows.training_key(summary["snapshot"]["id"], QUICK)
    assert cached("regime_hmm", key) == fresh  # the freshly trained model joins the cache
    assert summary["smoke_test"] is not None and summary["bento"]
    report = Path(summary["report"]).read_text()
    assert "direction_lightgbm failed" in report and "regime_hmm" in report
    row = next(r for r in retrain_summary.model_table(summary) if r["model"] == "direction_lightgbm")
    assert row["decision"] == "training failed" and "disk full" in row["why"]


def test_a_worse_challenger_is_not_promoted_and_is_labelled_rejected(
    run_flow: Run, quick_run: TrainingRun, challengers: dict[str, str], tmp_path: Path
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
    row = next(r for r in retrain_summary.model_table(summary) if r["model"] == "volatility_lightgbm")
    assert row["decision"] == "rejected" and row["shared folds"] == 2
    assert row["challenger on shared folds"] > row["production on shared folds"]  # lower MSE is better


def test_a_synthetic_universe_trains_but_never_replaces_production_trained_on_real_bars(
    run_flow: Run, challengers: dict[str, str], tmp_path: Path
) -> None:
    """``source="synthetic"`` (``mlops retrain run --source synthetic --symbols N``) runs the whole flow for scale
    tests; its cards say synthetic, and the gate never lets them replace a production model of another universe."""
    registry = registry_with(tmp_path, challengers)
    state, summary = run_flow(
        source="synthetic", synthetic=(4, 5.0, 0), models=["return_lightgbm"], snapshot_dir=tmp_path / "snap"
    )
    assert state.is_completed(), state.message
    assert summary["snapshot"]["source"] == "synthetic" and len(summary["snapshot"]["symbols"]) == 4
    assert summary["pull"]["source"]["synthetic"] is True
    tag = summary["models"]["return_lightgbm"]["tag"]
    assert get_model(tag).metadata["synthetic"] is True
    assert summary["rejected"] == {"return_lightgbm": tag} and summary["promoted"] == {}
    (check,) = [c for c in summary["gate"]["return_lightgbm"]["checks"] if not c["passed"]]
    assert check["rule"] == "versus_production" and "SYN0001" in check["detail"]
    assert registry.production() == challengers


def test_stricter_rules_from_a_file_reject_the_regime_model(
    run_flow: Run, challengers: dict[str, str], earlier_production: dict[str, str], tmp_path: Path
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
    run_flow: Run,
    challengers: dict[str, str],
    earlier_production: dict[str, str],
    context: Path,
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
    assert not (context / "bentos" / "production.json").exists()  # the source tree serves the registry's production
    assert "smoke test FAILED, do not serve it" in retrain_summary.summary_markdown(summary)


def test_build_failure_rolls_the_promotions_back(
    run_flow: Run,
    challengers: dict[str, str],
    earlier_production: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = registry_with(tmp_path, earlier_production)
    built = bento_tags()

    def failing_build(production: dict[str, str], context: Path) -> str:
        raise RuntimeError("bentoml build failed:\ninjected: no space left on device")

    monkeypatch.setattr(retrain_tasks, "build_bento_from", failing_build)
    state, summary = run_flow()
    assert state.is_failed()
    assert "bentoml build failed (RuntimeError: bentoml build failed:" in str(state.message)
    assert summary["promoted"] == challengers and summary["rolled_back"] == earlier_production
    assert summary["bento"] is None and summary["smoke_test"] is None and bento_tags() == built
    assert registry.production() == earlier_production
    text = retrain_summary.summary_markdown(summary)
    assert "none built (the build failed)" in text and "injected: no space left on device" in text


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
        # one ticker a call: these fakes answer per ticker (tests/test_sources.py covers batches)
        return dataclasses.replace(source, download=recording, sleep=lambda seconds: None, batch_size=1)

    monkeypatch.setattr(flows, "make_source", make)
    return asked


def offline(ticker: str, **kwargs: Any) -> pd.DataFrame:
    return pd.DataFrame()  # what yf.download returns when it cannot reach Yahoo


def as_yahoo_sends(ticker: str, **kwargs: Any) -> pd.DataFrame:
    """The embedded bars of ``ticker`` as yfinance hands them over: capitalised columns, dates as the index."""
    from arch.data import nasdaq, sp500

    return {"^GSPC": sp500.load, "^IXIC": nasdaq.load}[ticker]()


def test_yfinance_failure_fails_the_run_naming_the_tickers(
    run_flow: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    asked = fake_source(monkeypatch, offline)
    state, summary = run_flow(source="yfinance", tickers=["SPY", "QQQ"], snapshot_dir=tmp_path / "snapshots")
    assert state.is_failed()
    assert "no bars for SPY, QQQ" in str(state.message)
    assert set(asked) == {"SPY", "QQQ"} and len(asked) == 2 * 3  # every attempt, no sleeping
    assert summary["models"] == {} and summary["snapshot"] is None and summary["gate"] == {}
    text = retrain_summary.summary_markdown(summary)  # the whole story, not only its first line
    assert "gave up after 3 attempt(s)" in text and "No cached snapshots exist" in text
    assert "--use-cached-on-failure" in text


def test_a_hanging_yfinance_pull_stops_at_its_deadline(
    run_flow: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    release = threading.Event()
    request.addfinalizer(release.set)

    def hanging(ticker: str, **kwargs: Any) -> pd.DataFrame:
        release.wait(60)  # a socket that never answers
        return pd.DataFrame()

    fake_source(monkeypatch, hanging)
    monkeypatch.setenv("MLOPS_YFINANCE_DEADLINE_SECONDS", "1")
    started = time.monotonic()
    state, summary = run_flow(source="yfinance", tickers=["SPY", "QQQ"], snapshot_dir=tmp_path / "snapshots")
    assert time.monotonic() - started < 20
    assert state.is_failed() and "no bars for SPY, QQQ" in str(state.message)
    assert "overall deadline of 1 s passed" in summary["failures"][0]


def test_a_partial_yfinance_download_is_a_failed_pull(
    run_flow: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_source(monkeypatch, lambda ticker, **kwargs: offline(ticker) if ticker == "^IXIC" else as_yahoo_sends(ticker))
    state, summary = run_flow(source="yfinance", tickers=list(EMBEDDED_SYMBOLS), snapshot_dir=tmp_path / "snap")
    assert state.is_failed()
    assert "yfinance partial download: no bars for ^IXIC (got ^GSPC)" in str(state.message)
    assert summary["snapshot"] is None and summary["models"] == {}
    assert not (tmp_path / "snap").exists() or not list((tmp_path / "snap").iterdir())  # nothing half-stored


def test_a_yfinance_pull_of_the_same_bars_gives_the_same_snapshot_and_trains_nothing(
    run_flow: Run,
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
    challengers: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = fake_source(monkeypatch, as_yahoo_sends)
    registry_with(tmp_path, challengers)
    state, summary = run_flow(source="yfinance")  # the configured universe: MLOPS_RETRAIN_TICKERS
    assert state.is_completed(), state.message
    assert asked == list(EMBEDDED_SYMBOLS)
    assert summary["pull"]["ok"] and summary["pull"]["new"] is False
    assert summary["pull"]["source"]["tickers"] == list(EMBEDDED_SYMBOLS)
    assert summary["snapshot"]["id"] == embedded_snapshot[1].id
    assert {m["status"] for m in summary["models"].values()} == {"cached"} and summary["bento"] is None


def test_yfinance_failure_with_use_cached_on_failure_trains_on_the_latest_snapshot_of_the_universe(
    run_flow: Run,
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
    challengers: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unreachable(ticker: str, **kwargs: Any) -> pd.DataFrame:
        raise ConnectionError("connection reset by peer")

    fake_source(monkeypatch, unreachable)
    registry_with(tmp_path, challengers)
    state, summary = run_flow(source="yfinance", tickers=list(EMBEDDED_SYMBOLS), use_cached_on_failure=True)
    assert state.is_completed(), state.message
    assert summary["pull"]["ok"] is False and summary["pull"]["fallback"] == embedded_snapshot[1].id
    assert "no bars for ^GSPC, ^IXIC" in summary["pull"]["error"] and "connection reset" in summary["pull"]["error"]
    assert summary["snapshot"]["id"] == embedded_snapshot[1].id
    assert {m["status"] for m in summary["models"].values()} == {"cached"}
    assert "**pull failed**, trained on the latest snapshot" in retrain_summary.summary_markdown(summary)


def test_use_cached_on_failure_never_trains_on_other_symbols(run_flow: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_source(monkeypatch, offline)
    state, summary = run_flow(source="yfinance", tickers=["SPY"], use_cached_on_failure=True)
    assert state.is_failed()
    assert "and no cached snapshot of SPY to fall back on" in summary["failures"][0]
    assert summary["snapshot"] is None and summary["models"] == {}


def test_an_unusable_snapshot_fails_the_run_with_the_report(
    run_flow: Run, embedded_bars: pd.DataFrame, tmp_path: Path
) -> None:
    bars = embedded_bars.copy()
    rows = bars.index[bars["symbol"] == "^IXIC"][4000:4012]
    bars.loc[rows, ["open", "high", "low", "close"]] = 5000.0  # a feed stuck for 12 days
    store = SnapshotStore(tmp_path / "snapshots")
    info, _ = store.write(bars, source="test")
    state, summary = run_flow(snapshot_dir=store.root, snapshot=info.id)
    assert state.is_failed()
    assert f"snapshot {info.id}" in str(state.message) and "unusable" in str(state.message)
    assert summary["validation"]["usable"] is False
    assert [(e["check"], e["symbol"]) for e in summary["validation"]["errors"]] == [("stale_price", "^IXIC")]
    assert summary["models"] == {}
    text = retrain_summary.summary_markdown(summary)
    assert "validation: UNUSABLE, 1 error(s)" in text and "error [stale_price] ^IXIC" in text


# ---------------------------------------------------------------------------------------------- the lock


def test_a_second_promotion_waits_then_gives_up(run_flow: Run, challengers: dict[str, str], tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    with retrain_lock.promotion_lock(registry.root, "flow run 'first'", timeout=0):
        state, summary = run_flow(lock_timeout_seconds=1.0)
    assert state.is_failed()
    message = str(state.message)
    assert "gave up after 1 s waiting for the promotion lock" in message and "flow run 'first'" in message
    assert summary["promoted"] == {} and summary["gate"] == {} and registry.production() == {}
    assert "nothing was gated or promoted" in retrain_summary.summary_markdown(summary)


def test_a_second_promotion_waits_for_the_first_and_says_so(
    run_flow: Run, challengers: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry_with(tmp_path, challengers)
    held, waiting = threading.Event(), threading.Event()
    holder_of = retrain_lock.lock_holder
    said: list[str] = []

    def seen_waiting(handle: Any) -> str:  # only called while the lock is taken, by the run that waits
        waiting.set()
        return holder_of(handle)

    monkeypatch.setattr(retrain_lock, "lock_holder", seen_waiting)
    real_lock = retrain_lock.promotion_lock

    def listening(root: Path, holder: str, timeout: float, on_wait: Any = None) -> Any:
        return real_lock(root, holder, timeout, lambda message: (said.append(message), on_wait and on_wait(message)))

    monkeypatch.setattr(flows, "promotion_lock", listening)

    def first_run() -> None:
        with real_lock(registry.root, "flow run 'first'", timeout=0):
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
    (message,) = said
    assert message.startswith("another retrain run is gating, promoting or smoke-testing (flow run 'first'")
    text = retrain_summary.summary_markdown(summary)
    assert "s for the promotion lock: another run held it (flow run 'first'" in text


# -------------------------------------------------------------------------------------- entry points


def test_a_containerize_failure_fails_the_run_and_keeps_the_tested_bento(
    run_flow: Run,
    challengers: dict[str, str],
    earlier_production: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No Docker engine here: asking for Docker fails for real, after the Bento was built and smoke-tested."""
    registry = registry_with(tmp_path, earlier_production)
    monkeypatch.setenv("MLOPS_IMAGE_BACKEND", "docker")
    state, summary = run_flow(containerize=True)
    assert state.is_failed() and "containerize failed" in str(state.message)
    assert summary["bento"] and summary["smoke_test"] is not None and summary["image"] is None
    assert summary["promoted"] == challengers and summary["rolled_back"] == {}
    assert registry.production() == challengers  # the Bento that serves them passed its smoke test
    assert f"mlops image --bento {summary['bento']}" in str(state.message)
    result = CliRunner().invoke(retrain_cli.retrain_app, ["run", "--help"])
    assert "--containerize" in result.output and "not implemented" not in result.output.lower()


def test_the_deployment_runs_the_importable_flow_on_the_cron_schedule() -> None:
    deployment = retrain_cli.retrain_deployment("daily", "0 22 * * 1-5", {"quick": True, "tickers": None})
    assert deployment.name == "daily" and deployment.entrypoint == "training.flows.retrain.retrain"
    (schedule,) = deployment.schedules
    assert getattr(schedule.schedule, "cron", None) == "0 22 * * 1-5"
    assert deployment.parameters == {"quick": True, "tickers": None}


def test_code_version_hashes_what_trainers_import_and_not_the_orchestration() -> None:
    modules = set(retrain_cache.training_modules())
    assert {
        "training/models/lgbm.py",
        "training/models/trainer.py",
        "training/run.py",
        "features/pipeline.py",
    } <= modules
    assert {f"training/models/{name}.py" for name in MODEL_NAMES} <= modules
    # the serving-side model formats the trainers save with are part of what a model depends on
    assert {"bentos/regime_model.py", "bentos/prophet_model.py", "bentos/forest_model.py"} <= modules
    orchestration = ("training/flows/", "training/registry/promotion.py", "deploy/", "cli/", "data/quality.py")
    assert not {m for m in modules if m.startswith(orchestration)}
    version = retrain_cache.code_version()
    assert version == retrain_cache.code_version() and len(version) == 16


# ------------------------------------------------------------------------------------------------ on Dask


def test_the_flow_runs_on_the_dask_cluster_and_trains_what_it_trains_in_process(
    challengers: dict[str, str],
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
    context: Path,
    dask_client: Client,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """prefect-dask's task runner on a real two-worker LocalCluster: the flow's tasks and the training tasks they
    submit run on its workers, and the models equal those the first run trained in this process."""
    registry = registry_with(tmp_path, challengers)
    address = dask_client.scheduler_info()["address"]
    names = ["return_lightgbm", "regime_hmm"]
    with get_task_stream(client=dask_client) as stream:
        state = flows.retrain.with_options(task_runner=flows.dask_runner(address))(
            quick=True,
            snapshot_dir=embedded_snapshot[0].root,
            registry_root=registry.root,
            reports_root=tmp_path / "reports",
            build_context=context,
            models=names,
            force=True,
            scheduler=address,
            return_state=True,
        )
    summary = outcome_of(state)
    fresh = {name: summary["models"][name]["tag"] for name in names}
    request.addfinalizer(lambda: [bentoml.models.delete(tag) for tag in fresh.values()])
    assert state.is_completed(), state.message
    assert {summary["models"][n]["status"] for n in names} == {"trained"}
    keys = {str(task["key"]) for task in stream.data}
    for stage in ("features-^GSPC-", "return_lightgbm-fold-0-", "return_lightgbm-fit-", "regime_hmm-refit-final-"):
        assert any(key.startswith(stage) for key in keys), stage
    workers = {task["worker"] for task in stream.data}
    assert len(workers) == 2
    ours, theirs = (bentoml.lightgbm.load_model(t) for t in (fresh["return_lightgbm"], challengers["return_lightgbm"]))
    assert ours.dump_model()["tree_info"] == theirs.dump_model()["tree_info"]
    metrics = [get_model(t).metadata["metrics"] for t in (fresh["regime_hmm"], challengers["regime_hmm"])]
    assert metrics[0] == metrics[1]
