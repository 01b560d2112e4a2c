"""The whole live loop on real data (issue 16): a real ``bentoml serve`` of the demo models answers a replayed year of
the S&P 500 (one window a day, symbol named), then half a year of deliberately shifted windows (the index's daily
moves four times as large, sent without a symbol); the monitor ingests what the worker recorded, joins it with the
bars that followed, scores it, flags the shift and triggers the retrain deployment on a real Prefect API.

The replayed year, 2017, is inside the demo models' training period: this checks the loop's mechanics and figures
against a direct computation, not the models' skill (their walk-forward cards hold that).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
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
    days = gspc.index[(gspc["date"] >= "2017-01-01") & (gspc["date"] <= "2017-12-31")]
    shifted_days = gspc.index[(gspc["date"] >= "2018-01-01") & (gspc["date"] <= "2018-07-31")]
    shifted = _shifted(gspc, int(shifted_days[0]))
    logs = tmp_path_factory.mktemp("loop-logs")
    answers = {}
    environment = {"MLOPS_MONITOR_LOG_PATH": str(logs)}
    with served("bentos.service:MarketModels", env=environment) as url, bentoml.SyncHTTPClient(url) as client:
        for i in days:
            window = _window(gspc, int(i))
            answers[str(gspc["date"].iloc[i].date())] = client.predict_all(bars=window, symbol="^GSPC")
            client.forecast_price(symbol="^GSPC", periods=5, bars=window)
        for i in shifted_days:
            client.predict_all(bars=_window(shifted, int(i)))
    return {"gspc": gspc, "days": days, "shifted_days": shifted_days, "logs": logs, "answers": answers}


@pytest.fixture(scope="module")
def monitored(replay: dict[str, Any], embedded_snapshot, production_models, tmp_path_factory) -> dict[str, Any]:
    """Two monitor runs over the replay, the retrain deployment served by a real (temporary) Prefect API."""
    from cli.retrain import retrain_deployment

    store, _ = embedded_snapshot
    deployment = retrain_deployment("loop-test", "0 22 * * 1-5", {"quick": True})
    deployment.apply()
    output = tmp_path_factory.mktemp("monitor")
    settings = MonitorSettings(output_dir=output, retrain_deployment="retrain/loop-test")
    database = f"sqlite:///{output / 'store.sqlite'}"
    now = datetime(2018, 8, 10, 22, 30, tzinfo=UTC)
    kwargs = {"logs": replay["logs"], "database": database, "snapshots": store, "production": production_models}
    first, where = run_and_publish(settings, now=now, **kwargs)
    second, _ = run_and_publish(settings, now=now.replace(day=13), **kwargs)
    return {"first": first, "second": second, "where": where, "database": database, "output": output,
            "snapshots": embedded_snapshot}  # fmt: skip


def test_every_answer_is_stored_once_with_its_outcome(replay, monitored):
    store = PredictionStore(monitored["database"])
    days, shifted = len(replay["days"]), len(replay["shifted_days"])
    assert store.count() == 5 * days + 5 * days + 5 * shifted  # predict_all: 5 models; forecasts: 5 dates a day
    frame = monitored["first"].frame
    direction = frame[(frame["model"] == "direction_lightgbm") & (frame["symbol"] == "^GSPC")].set_index("as_of")
    for day, answer in replay["answers"].items():
        assert direction.loc[day, "prediction"] == answer["direction"]["probability_up"]
    assert (frame.loc[frame["symbol"] == "^GSPC", "status"] == REALISED).all()
    unnamed = frame[frame["symbol"] == ""]
    assert len(unnamed) == 5 * shifted and (unnamed["status"] == UNSCORABLE).all()
    assert unnamed["reason"].str.contains("match no stored series").all()


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


def test_the_shift_alerts_and_triggers_one_retrain_with_its_reason(monitored):
    first, second = monitored["first"], monitored["second"]
    drift = first.models["volatility_lightgbm"].drift
    assert {"rv_5", "rv_21"} <= set(drift.persistent)
    assert any("drift alert" in alert and "rv_5" in alert for alert in first.alerts)
    assert first.trigger["triggered"], first.trigger
    assert second.trigger["triggered"] is False and second.trigger["why"].startswith("rate limit")

    async def parameters(flow_run_id: str) -> dict[str, Any]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).parameters

    reason = asyncio.run(parameters(first.trigger["flow_run_id"]))["reason"]
    assert reason.startswith("monitor: ") and "drift alert" in reason
    where = monitored["where"]
    page = Path(where["report"]).read_text()
    assert "Alert rules" in page and "retrain triggered" in page and page.count("<img") >= 10
    assert page.count("walk-forward (card)") == 4  # the signal tables: both return models, direction, volatility
    assert "mlops_monitor_psi" in Path(where["metrics"].removeprefix("written to ")).read_text()


def test_shadow_scoring_reproduces_the_served_answers_and_the_gate_reads_it(replay, monitored, production_models):
    """A challenger is scored in shadow through the service's runners on the recorded feature rows: production
    itself, scored so, gets exactly its served figures; this is what the retrain gate's live_dates check reports."""
    from monitoring.shadow import live_comparison

    store, _ = monitored["snapshots"]
    for model in ("return_lightgbm", "direction_lightgbm", "volatility_lightgbm"):
        tag = production_models[model]
        live = live_comparison(model, tag, tag, monitored["database"], store)
        days = replay["days"]
        assert live is not None and live["values"]["answers"] == len(days), model
        assert live["values"]["challenger"] == pytest.approx(live["values"]["production"], rel=1e-12), model
        first, last = (str(replay["gspc"]["date"].iloc[i].date()) for i in (days[0], days[-1]))
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
