"""The whole live loop on real data (issue 16): a real ``bentoml serve`` of the demo models answers a replayed year of
the S&P 500 (one window a day, symbol named), some NASDAQ windows sent without a symbol (matched by their bars), then
half a year of deliberately shifted windows (the index's daily moves four times as large, sent without a symbol); the
monitor ingests what the worker recorded, joins it with the bars that followed, scores it (a challenger in shadow
beside production), flags the shift and triggers the retrain deployment on a real Prefect API; that retrain runs in
a process of its own (``prefect flow-run execute``) and its summary names the evidence. The second monitor run is the
Prefect flow ``monitor`` itself, configured by the environment as ``mlops monitor run`` is (its pull:
tests/test_monitor_actions.py). The monitor sees the bars as they stood on its day, 2018-08-10.

The replayed year, 2017, is inside the demo models' training period: this checks the loop's mechanics and figures
against a direct computation, not the models' skill (their walk-forward cards hold that).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest

from data.snapshots import SnapshotInfo, SnapshotStore
from monitoring.flow import run_and_publish
from monitoring.job import MonitorSettings
from monitoring.outcomes import REALISED, UNSCORABLE
from monitoring.store import PredictionStore
from tests.integration_helpers import served
from training.evaluation.metrics import classification_metrics

pytestmark = pytest.mark.integration

WINDOW = 300
MONITOR_DAY = "2018-08-10"  # the monitor runs after the replay's last (shifted) day, 2018-07-31
SINGLE = 30  # days of the replay also asked through predict_return and detect_regime
SHIFT = 4.0  # the shifted period's daily log returns, times this


def _window(frame: pd.DataFrame, end: int) -> dict[str, list[Any]]:
    part = frame.iloc[end + 1 - WINDOW : end + 1]
    window: dict[str, list[Any]] = {"date": part["date"].dt.strftime("%Y-%m-%d").tolist()}
    return window | {c: part[c].tolist() for c in ("open", "high", "low", "close", "volume")}


def _shifted(frame: pd.DataFrame, start: int) -> pd.DataFrame:
    """``frame`` with every daily log return from bar ``start`` on multiplied by :data:`SHIFT` (bars kept valid)."""
    log_close = np.log(frame["close"].to_numpy())
    moved = log_close.copy()
    moved[start:] = log_close[start - 1] + SHIFT * (log_close[start:] - log_close[start - 1])
    ratio = np.exp(moved - log_close)
    out = frame.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = out[column] * ratio
    out["high"] = out[["open", "high", "low", "close"]].max(axis=1)
    out["low"] = out[["open", "high", "low", "close"]].min(axis=1)
    return out


@pytest.fixture(scope="module")
def replay(
    production_models: dict[str, str],
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Serve the demo models, replay 2017 and the shifted half of 2018, and return what was sent and answered."""
    store, info = embedded_snapshot
    gspc = store.load(info.id, symbols=["^GSPC"]).sort_values("date").reset_index(drop=True)
    ixic = store.load(info.id, symbols=["^IXIC"]).sort_values("date").reset_index(drop=True)
    days = gspc.index[(gspc["date"] >= "2017-01-01") & (gspc["date"] <= "2017-12-31")]
    shifted_days = gspc.index[(gspc["date"] >= "2018-01-01") & (gspc["date"] <= "2018-07-31")]
    unnamed_days = ixic.index[(ixic["date"] >= "2016-06-01") & (ixic["date"] <= "2016-06-30")]
    shifted = _shifted(gspc, int(shifted_days[0]))
    logs = tmp_path_factory.mktemp("loop-logs")
    answers, single = {}, {}
    environment = {"MLOPS_MONITOR_LOG_PATH": str(logs)}
    with served("bentos.service:MarketModels", env=environment) as url, bentoml.SyncHTTPClient(url) as client:
        for i in days:
            window = _window(gspc, int(i))
            answers[str(gspc["date"].iloc[i].date())] = client.predict_all(bars=window, symbol="^GSPC")
            client.forecast_price(symbol="^GSPC", periods=5, bars=window)
        for i in days[:SINGLE]:  # the single-model methods record as predict_all does
            window = _window(gspc, int(i))
            single[str(gspc["date"].iloc[i].date())] = (
                client.predict_return(bars=window, model="random_forest", symbol="^GSPC"),
                client.detect_regime(bars=window, symbol="^GSPC"),
            )
        unnamed = {str(ixic["date"].iloc[i].date()): client.predict_volatility(bars=_window(ixic, int(i)))
                   for i in unnamed_days}  # fmt: skip
        for i in shifted_days:
            client.predict_all(bars=_window(shifted, int(i)))
    return {"gspc": gspc, "ixic": ixic, "days": days, "shifted_days": shifted_days, "unnamed_days": unnamed_days,
            "logs": logs, "answers": answers, "single": single, "unnamed": unnamed}  # fmt: skip


@pytest.fixture(scope="module")
def monitored(
    replay: dict[str, Any], embedded_snapshot, production_models, prefect_api: str, quick_run, tmp_path_factory
) -> dict[str, Any]:
    """Two monitor runs over the replay, the retrain deployment on the session's Prefect API, a challenger stored."""
    from cli.retrain import retrain_deployment
    from deploy.bento import build_context
    from monitoring.flow import monitor
    from training.registry.promotion import Registry

    embedded, info = embedded_snapshot
    output = tmp_path_factory.mktemp("monitor")
    # the bars as they stood on the monitor's day: the replay's answers have their outcomes, and the shifted
    # windows' served days are recent
    store = SnapshotStore(output / "snapshots")
    bars = embedded.load(info.id)
    cut_info, _ = store.write(bars[bars["date"] <= MONITOR_DAY], source=f"embedded, bars to {MONITOR_DAY}")
    registry = Registry(output / "registry")  # production as served, for the triggered retrain to gate against
    registry.promote(list(production_models.values()), reason="loop test")
    parameters = {"quick": True, "models": ["volatility_lightgbm"], "snapshot_dir": str(store.root),
                  "registry_root": str(registry.root), "reports_root": str(output / "reports"),
                  "build_context": str(build_context(output / "bento-context"))}  # fmt: skip
    retrain_deployment("loop-test", "0 22 * * 1-5", parameters).apply()
    challenger = _challenger(quick_run, "direction_lightgbm")
    settings = MonitorSettings(output_dir=output, retrain_deployment="retrain/loop-test")
    database = f"sqlite:///{output / 'store.sqlite'}"
    now = datetime.now(UTC) - timedelta(days=1)
    kwargs = {"logs": replay["logs"], "database": database, "snapshots": store, "production": production_models}
    first, where = run_and_publish(settings, now=now, **kwargs)
    environment = {"MLOPS_MONITOR_OUTPUT_DIR": str(output), "MLOPS_MONITOR_RETRAIN_DEPLOYMENT": "retrain/loop-test",
                   "MLOPS_MONITOR_DATABASE_URL": database, "MLOPS_MONITOR_LOG_PATH": str(replay["logs"]),
                   "MLOPS_SNAPSHOT_DIR": str(store.root)}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for key, value in environment.items():
            patch.setenv(key, value)
        state = monitor(return_state=True)
    return {"first": first, "second": state, "where": where, "database": database, "output": output,
            "snapshots": (store, cut_info), "challenger": challenger, "registry": registry,
            "api": prefect_api}  # fmt: skip


def _challenger(quick_run, name: str) -> str:
    """A newer, never promoted version of production's model (the same fit, so its shadow answers are known)."""
    from training.config import TrainingConfig
    from training.registry.store import Stage
    from training.run import trainer_class

    result = next(r for r in quick_run.results if r.name == name)
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="seconds")
    metadata = result.card.model_copy(update={"created_at": later}).to_metadata()
    trainer = trainer_class(name)(TrainingConfig.quick())
    return str(trainer.save(result.fitted, metadata, {"task": trainer.task, "stage": Stage.CANDIDATE}).tag)


def test_every_answer_is_stored_once_with_its_outcome(replay, monitored):
    store = PredictionStore(monitored["database"])
    days, shifted, unnamed = len(replay["days"]), len(replay["shifted_days"]), len(replay["unnamed_days"])
    # predict_all: 5 models; forecasts: 5 dates a day; predict_return and detect_regime; predict_volatility
    assert store.count() == 5 * days + 5 * days + 5 * shifted + 2 * SINGLE + unnamed
    frame = monitored["first"].frame
    direction = frame[(frame["model"] == "direction_lightgbm") & (frame["symbol"] == "^GSPC")].set_index("as_of")
    for day, answer in replay["answers"].items():
        assert direction.loc[day, "prediction"] == answer["direction"]["probability_up"]
    assert (frame.loc[frame["symbol"] == "^GSPC", "status"] == REALISED).all()
    for day, (ret, regime) in replay["single"].items():
        rows = frame[(frame["as_of"] == day) & (frame["method"] != "predict_all")].set_index("model")
        assert rows.loc["return_random_forest", "method"] == "predict_return"
        assert rows.loc["return_random_forest", "prediction"] == ret["expected_log_return"]
        assert ret["expected_log_return"] == replay["answers"][day]["return_random_forest"]["expected_log_return"]
        assert rows.loc["regime_hmm", "method"] == "detect_regime"
        regime_row = rows.loc["regime_hmm"]
        state = list(regime["probabilities"]).index(regime["regime"])
        assert (regime_row["prediction"], regime_row["label"]) == (state, regime["regime"])
    matched = frame[(frame["symbol"] == "") & (frame["method"] == "predict_volatility")].set_index("as_of")
    assert len(matched) == unnamed and (matched["status"] == REALISED).all() and matched["matched_by_bars"].all()
    assert (matched["scored_symbol"] == "^IXIC").all()
    ixic = replay["ixic"]
    close = ixic["close"].to_numpy()
    for i in replay["unnamed_days"]:
        day = str(ixic["date"].iloc[i].date())
        assert matched.loc[day, "prediction"] == replay["unnamed"][day]["annualized_volatility"]
        assert matched.loc[day, "realised"] == pytest.approx(np.sqrt(np.mean(np.diff(np.log(close[i : i + 6])) ** 2)
                                                                     * 252), rel=1e-12)  # fmt: skip
    shifted_rows = frame[(frame["symbol"] == "") & (frame["method"] == "predict_all")]
    assert len(shifted_rows) == 5 * shifted and (shifted_rows["status"] == UNSCORABLE).all()
    assert shifted_rows["reason"].str.contains("match no stored series").all()


def test_the_scorecard_equals_a_direct_computation(replay, monitored):
    gspc, days = replay["gspc"], replay["days"]
    close = gspc["close"].to_numpy()
    answers = [replay["answers"][str(gspc["date"].iloc[i].date())] for i in days]
    up = (close[days + 1] > close[days]).astype(float)
    p_up = np.array([a["direction"]["probability_up"] for a in answers])
    status = monitored["first"].models["direction_lightgbm"]
    assert status.score.live == pytest.approx(classification_metrics(up, p_up), rel=1e-9)
    next_day = np.log(close[days + 1] / close[days])
    assert status.score.signal["model"]["pearson"]["mean"] == pytest.approx(np.corrcoef(p_up, next_day)[0, 1])
    horizon = answers[0]["return_lightgbm"]["horizon_days"]
    realised = np.log(close[days + horizon] / close[days])
    predicted = np.array([a["return_lightgbm"]["expected_log_return"] for a in answers])
    ret = monitored["first"].models["return_lightgbm"].score
    assert ret.live["r2_vs_zero"] == pytest.approx(1 - np.sum((realised - predicted) ** 2) / np.sum(realised**2))
    assert ret.live["hit_rate"] == pytest.approx(np.mean(np.sign(predicted) == np.sign(realised)))
    assert ret.rows == len(days)
    # asked twice on SINGLE days (predict_all, then predict_return): one forecast each, scored once
    forest = monitored["first"].models["return_random_forest"].score
    predicted = np.array([a["return_random_forest"]["expected_log_return"] for a in answers])
    assert (forest.rows, forest.repeats) == (len(days), SINGLE) and "counted once" in forest.statement
    assert forest.live["r2_vs_zero"] == pytest.approx(1 - np.sum((realised - predicted) ** 2) / np.sum(realised**2))


def test_the_shift_alerts_and_triggers_one_retrain_with_its_reason(monitored):
    first, state = monitored["first"], monitored["second"]
    drift = first.models["volatility_lightgbm"].drift
    assert drift.source == "served" and {"rv_5", "rv_21"} <= set(drift.persistent)
    assert any("drift alert" in alert and "rv_5" in alert for alert in first.alerts)
    assert first.trigger["triggered"], first.trigger
    where = monitored["where"]
    page = Path(where["report"]).read_text()
    assert "Alert rules" in page and "retrain triggered" in page
    drawn = [m for m, s in first.models.items() if s.drift is not None and not s.drift.daily.empty]
    rolling = [m for m, s in first.models.items() if s.score is not None and s.score.rolling is not None]
    # per model: the PSI lines, the PSI map, the predictions' distribution; the rolling metric but for the regime's
    assert len(drawn) == 6 and len(rolling) == 5 and page.count("<img") == 3 * len(drawn) + len(rolling)
    assert page.count("walk-forward (card)") == 4  # the signal tables: both return models, direction, volatility
    assert "mlops_monitor_psi" in Path(where["metrics"].removeprefix("written to ")).read_text()

    # the second run: the Prefect flow, configured by the environment, the same alert held back by the rate limit
    assert state.is_completed(), state.message
    second = state.result()
    assert second["pull"] == "no pull asked for"
    assert second["trigger"]["triggered"] is False and second["trigger"]["why"].startswith("rate limit")
    assert second["alerts"] == first.alerts
    status = json.loads(Path(second["status"]).read_text())  # the store MLOPS_MONITOR_DATABASE_URL names: all in
    assert status["ingest"]["new"] == 0
    assert status["rows"] == first.rows == PredictionStore(monitored["database"]).count()
    flow_run_id = state.state_details.flow_run_id
    table, alerts = (_artifact(key, flow_run_id) for key in ("monitor-status", "monitor-alerts"))
    assert "volatility_lightgbm" in str(table.data) and "walk-forward" in str(table.data)
    assert "drift alert" in str(alerts.data) and "no retrain: rate limit" in str(alerts.data)


def test_the_triggered_retrain_runs_and_its_summary_names_the_evidence(replay, monitored, tmp_path):
    """The flow run the monitor created is executed as a worker would, in a process of its own; its gate compares
    the retrained model with production on the live dates too."""
    import os
    import shutil
    import subprocess
    import sys

    from prefect.client.orchestration import get_client

    from training.flows.summary import SUMMARY_KEY

    flow_run_id = monitored["first"].trigger["flow_run_id"]
    store, _ = monitored["snapshots"]
    # a copy of the session's model store: the run promotes, and a promotion retires production's labels there
    home = tmp_path / "bentoml"
    shutil.copytree(Path(os.environ["BENTOML_HOME"]) / "models", home / "models")
    # the gate reads the same prediction store and snapshots as the monitor, as a deployment beside it would
    environment = {"PREFECT_API_URL": monitored["api"], "MLOPS_MONITOR_DATABASE_URL": monitored["database"],
                   "MLOPS_SNAPSHOT_DIR": str(store.root), "BENTOML_HOME": str(home)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "prefect", "flow-run", "execute", flow_run_id], capture_output=True,
                          text=True, timeout=900, env=os.environ | environment)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_flow_run(flow_run_id)

    run = asyncio.run(read())
    assert run.state.is_completed() and run.parameters["reason"].startswith("monitor: ")
    summary = str(_artifact(SUMMARY_KEY, flow_run_id).data)
    assert f"Triggered by: {run.parameters['reason']}" in summary and "drift alert" in summary and "rv_5" in summary
    # the retrained volatility model against production on the live dates production answered (the gate's check)
    answers = len(replay["days"]) + len(replay["unnamed_days"])
    assert f"ok live_dates: on {answers} live answers (" in summary, summary


def _artifact(key: str, flow_run_id: Any) -> Any:
    """The artifact ``key`` that flow run ``flow_run_id`` created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    async def read() -> Any:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            )

    (artifact,) = asyncio.run(read())
    return artifact


def test_shadow_scoring_reproduces_the_served_answers_and_the_gate_reads_it(replay, monitored, production_models):
    """A challenger is scored in shadow through the service's runners on the recorded feature rows: a newer stored
    version of the same fit gets exactly production's served figures, in the monitor's run and in the retrain gate's
    live_dates check."""
    from monitoring.shadow import live_comparison

    store, _ = monitored["snapshots"]
    direction = monitored["first"].models["direction_lightgbm"]
    (challenger,) = direction.challengers
    assert challenger.version == monitored["challenger"].partition(":")[2]
    assert challenger.rows == direction.score.rows == len(replay["days"])
    assert challenger.live == pytest.approx(direction.score.live, rel=1e-12)
    days = replay["days"]
    for model, answers in (("return_lightgbm", len(days)), ("direction_lightgbm", len(days)),
                           ("volatility_lightgbm", len(days) + len(replay["unnamed_days"]))):  # fmt: skip
        tag = production_models[model]
        live = live_comparison(model, tag, tag, monitored["database"], store)
        assert live is not None and live["values"]["answers"] == answers, model
        assert live["values"]["challenger"] == pytest.approx(live["values"]["production"], rel=1e-12), model
    first, last = (str(replay["gspc"]["date"].iloc[i].date()) for i in (days[0], days[-1]))
    live = live_comparison("direction_lightgbm", monitored["challenger"], production_models["direction_lightgbm"],
                           monitored["database"], store)  # fmt: skip
    assert live["detail"].startswith(f"on {len(days)} live answers ({first}..{last})")
    assert live_comparison("price_prophet", *[production_models["price_prophet"]] * 2, monitored["database"]) is None


def test_monitor_status_prints_the_last_run_per_model(monitored, monkeypatch):
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("MLOPS_MONITOR_OUTPUT_DIR", str(monitored["output"]))
    result = CliRunner().invoke(app, ["monitor", "status"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    for model in ("direction_lightgbm", "return_lightgbm", "volatility_lightgbm", "price_prophet", "regime_hmm"):
        assert model in result.output
    assert "walk-forward" in result.output and "alert" in result.output and "rv_" in result.output
