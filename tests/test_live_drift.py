"""Daily drift of what was served (issue 16): PSI per day over enough recent values, checked by hand, and a real
card's references flagging a real shift in real features while unshifted served features stay quiet."""

from __future__ import annotations

import math
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest

from bentos import recording
from bentos.runners import load_runner
from features import DEFAULT_SPEC, Bars
from monitoring.live_drift import PREDICTION as PREDICTION_NAME
from monitoring.live_drift import DriftRules, daily_psi, model_drift
from training.evaluation.drift_reference import Reference


def test_daily_psi_waits_for_enough_values_and_days_then_matches_a_hand_computation():
    days = np.repeat([f"2020-01-{d:02d}" for d in range(1, 31)], 5)  # 30 days, 5 values a day
    values = np.ones(days.size)  # every value in the upper bin
    frame = daily_psi(days, values, Reference((0.0,), (0.5, 0.5), 1000), DriftRules(min_rows=100, min_days=21))
    assert frame["as_of"].iloc[0] == "2020-01-21"  # the first day with 21 days and >= 100 values behind it
    assert frame["rows"].iloc[0] == 105
    # actual shares (0 floored to 1e-4, 1); expected (0.5, 0.5)
    by_hand = (0.0001 - 0.5) * math.log(0.0001 / 0.5) + (1 - 0.5) * math.log(1 / 0.5)
    assert frame["psi"].iloc[0] == pytest.approx(by_hand, rel=1e-12)
    assert set(frame["level"]) == {"alert"}
    assert len(frame) == 10


def _served_rows(frame: pd.DataFrame, runner: Any, scale: float = 1.0) -> pd.DataFrame:
    """Recorded rows of a day-by-day replay of ``frame`` (one window a day), returns scaled by ``scale``, with the
    direction model's answers (``runner``, the service's)."""
    bars = frame.copy()
    if scale != 1.0:
        log_close = np.log(bars["close"].to_numpy())
        shifted = np.exp(log_close[0] + scale * (log_close - log_close[0]))
        ratio = shifted / bars["close"].to_numpy()
        for column in ("open", "high", "low", "close"):
            bars[column] = bars[column] * ratio
        bars["high"] = bars[["open", "high", "low", "close"]].max(axis=1)
        bars["low"] = bars[["open", "high", "low", "close"]].min(axis=1)
    features = DEFAULT_SPEC.compute(Bars.from_frame(bars))
    answers = runner.predict(features[300:])
    rows = []
    for i, answer in zip(range(300, len(bars)), answers, strict=True):
        day = str(bars["date"].iloc[i].date())
        rows.append(recording.row("predict_direction", "direction_lightgbm", "v", day, 1, answer, symbol="^GSPC",
                                  features=features[i]))  # fmt: skip
    return pd.DataFrame.from_records(rows)


def test_a_real_shift_alerts_and_persists_where_the_calm_years_do_not(embedded_snapshot, quick_run):
    store, info = embedded_snapshot
    result = next(r for r in quick_run.results if r.name == "direction_lightgbm")
    card, runner = result.card, load_runner(result.name, bentoml.models.get(result.tag))
    gspc = store.load(info.id, symbols=["^GSPC"]).sort_values("date").reset_index(drop=True)
    recent = gspc[gspc["date"] >= "2016-01-01"].reset_index(drop=True)
    calm = model_drift(_served_rows(recent, runner), card, "v")
    shifted = model_drift(_served_rows(recent, runner, scale=4.0), card, "v")
    # the calm years, served as they were: further from the whole training period than plain PSI levels allow
    # (0.25), but not further than the training period's own windows went. (The predictions may alert: these years
    # are inside the final fit's training rows, and its in-sample answers are not the walk-forward's out-of-sample
    # ones the reference holds. Served after its training, as live answers are, they do not: a model trained to
    # 2014 served 2015-2018 out of sample, benchmarks/results/monitor.md.)
    assert (calm.latest()["psi"] > 0.25).sum() >= 5 and set(calm.persistent) <= {"prediction"}
    latest = shifted.latest().set_index("name")
    assert {"rv_5", "rv_63", "ret_63", "prediction"} <= set(shifted.persistent)
    assert (latest.loc[shifted.persistent, "psi"] > latest.loc[shifted.persistent, "alert_at"]).all()
    assert calm.skipped["month_sin"] == "a function of the date: not checked"


def test_prediction_drift_acts_where_the_card_calibrates_it(quick_run):
    """Every card but Prophet's calibrates its prediction reference on the folds' own windows (the regime's too: a
    month of regimes is far from their long-run mix, and so were the folds' months), and its persistent alert acts;
    Prophet's prediction drift is drawn and reported, never acted on, and says why."""
    cards = {r.name: r.card for r in quick_run.results}
    for name, card in cards.items():
        calibration = card.drift_reference["predictions"].get("calibration")
        assert (calibration is None) == (name == "price_prophet"), name
    regime = cards["regime_hmm"].drift_reference["predictions"]["calibration"]
    assert regime["21"][1] > 0.25  # plain levels would alert on the folds' own months of regimes
    days = np.repeat(pd.bdate_range("2019-01-01", periods=30).strftime("%Y-%m-%d").to_numpy(), 5)
    rows = pd.DataFrame({"as_of": days, "prediction": 100.0 * np.exp(np.linspace(-0.5, 0.5, days.size)),
                         "label": "100.0", "features": ""})  # fmt: skip
    drift = model_drift(rows, cards["price_prophet"], "v", DriftRules(persist_days=2))
    assert drift.persistent == ["prediction"]  # forecast returns of +-50 %: far outside the folds'
    assert drift.acting == [] and "Prophet" in drift.reported_only["prediction"]
    rows["prediction"] = np.linspace(-0.5, 0.5, days.size)  # expected log returns of +-50 % over five days
    drift = model_drift(rows, cards["return_lightgbm"], "v", DriftRules(persist_days=2))
    assert drift.acting == ["prediction"] and drift.reported_only == {}


def test_thin_traffic_takes_the_psi_over_the_trained_symbols_latest_bars(embedded_snapshot, quick_run):
    """No served rows: the last day's PSI is over both indices' last 50 bars (100 values, the rule's minimum),
    their features as the service computes them on the whole series."""
    from monitoring import drift
    from monitoring.live_drift import bars_drift
    from monitoring.outcomes import SeriesFinder

    store, info = embedded_snapshot
    card = next(r.card for r in quick_run.results if r.name == "volatility_lightgbm")
    result = bars_drift(card, "v", SeriesFinder(store), DriftRules(min_rows=100, min_days=21))
    assert result.source.startswith("latest bars of 2 of the 2 trained symbol(s) (^GSPC to 2018-12-31")
    assert result.skipped[PREDICTION_NAME].startswith("a volatility model's answers")
    last = result.latest().set_index("name")
    column = card.feature_names.index("rv_21")
    values = []
    for symbol in ("^GSPC", "^IXIC"):
        frame = store.load(info.id, symbols=[symbol]).sort_values("date")
        values.append(DEFAULT_SPEC.compute(Bars.from_frame(frame))[-50:, column])
    reference = Reference.from_dict(card.drift_reference["features"]["rv_21"])
    assert last.loc["rv_21", "rows"] == 100 and last.loc["rv_21", "as_of"] == "2018-12-31"
    assert last.loc["rv_21", "psi"] == pytest.approx(drift.psi(reference, np.concatenate(values)), rel=1e-12)
    assert result.daily["as_of"].nunique() == 64  # the first PSI's day and BARS_DAYS after it


def test_a_monitor_run_without_traffic_alerts_on_a_shift_in_the_latest_bars(
    embedded_snapshot, production_models, tmp_path
):
    """The monitor with nothing served, over a snapshot whose last half year moves four times as much: every
    model's drift is taken over the latest bars, the per-row models' predictions on them too, and the alert acts."""
    from data.snapshots import SnapshotStore
    from monitoring.job import MonitorSettings, run

    store, info = embedded_snapshot
    frame = store.load(info.id)
    parts = []
    for _, bars in frame.groupby("symbol"):
        bars = bars.sort_values("date").reset_index(drop=True)
        log_close = np.log(bars["close"].to_numpy())
        start = len(bars) - 126
        moved = log_close.copy()
        moved[start:] = log_close[start - 1] + 4.0 * (log_close[start:] - log_close[start - 1])
        ratio = np.exp(moved - log_close)
        for column in ("open", "high", "low", "close"):
            bars[column] = bars[column] * ratio
        bars["high"] = bars[["open", "high", "low", "close"]].max(axis=1)
        bars["low"] = bars[["open", "high", "low", "close"]].min(axis=1)
        parts.append(bars)
    shifted = SnapshotStore(tmp_path / "snapshots")
    shifted.write(pd.concat(parts, ignore_index=True), source="embedded, last half year shifted")
    (tmp_path / "logs").mkdir()
    settings = MonitorSettings(output_dir=tmp_path / "out")
    result = run(settings, logs=tmp_path / "logs", database=f"sqlite:///{tmp_path / 'store.sqlite'}",
                 snapshots=shifted, production=production_models)  # fmt: skip
    assert result.rows == 0
    volatility = result.models["volatility_lightgbm"].drift
    assert volatility.source.startswith("latest bars of 2 of the 2 trained symbol(s)")
    assert {"rv_5", "rv_21", PREDICTION_NAME} <= set(volatility.persistent)
    assert any("drift alert" in a and "rv_5" in a for a in result.models["volatility_lightgbm"].alerts)
    assert PREDICTION_NAME in result.models["direction_lightgbm"].drift.daily["name"].to_numpy()
    assert result.models["regime_hmm"].drift.skipped[PREDICTION_NAME].startswith("a regime model's answers")


def test_rows_without_a_feature_row_of_the_cards_length_are_left_out_of_the_features_only(embedded_snapshot, quick_run):
    store, info = embedded_snapshot
    result = next(r for r in quick_run.results if r.name == "direction_lightgbm")
    runner = load_runner(result.name, bentoml.models.get(result.tag))
    gspc = store.load(info.id, symbols=["^GSPC"]).sort_values("date").reset_index(drop=True)
    rows = _served_rows(gspc[gspc["date"] >= "2017-01-01"].reset_index(drop=True), runner)
    odd = rows.iloc[:3].assign(features=recording.encode_features([0.5] * 7))  # another spec's rows
    alone, mixed = model_drift(rows, result.card, "v"), model_drift(pd.concat([rows, odd]), result.card, "v")
    assert mixed.skipped["features (some rows)"].startswith(f"3 of {len(rows) + 3} recorded rows carry no feature")
    features = [n for n in result.card.feature_names if n in set(alone.daily["name"])]
    assert len(features) > 20
    pick = alone.daily[alone.daily["name"].isin(features)].reset_index(drop=True)
    assert mixed.daily[mixed.daily["name"].isin(features)].reset_index(drop=True).equals(pick)
    # the predictions keep every row
    assert (mixed.daily.loc[mixed.daily["name"] == PREDICTION_NAME, "rows"].sum()
            > alone.daily.loc[alone.daily["name"] == PREDICTION_NAME, "rows"].sum())  # fmt: skip


def test_a_challenger_in_shadow_leaves_out_rows_it_cannot_read_and_scores_the_rest(embedded_snapshot, quick_run):
    """A stored version scored in shadow on production's recorded rows, some of which carry another spec's feature
    row: those are left out (said), the rest scored exactly as production's own answers are (the same fit)."""
    from monitoring.outcomes import SeriesFinder, outcomes
    from monitoring.scorecard import scorecard
    from monitoring.shadow import Challenger, shadow_scores

    store, info = embedded_snapshot
    result = next(r for r in quick_run.results if r.name == "direction_lightgbm")
    runner = load_runner(result.name, bentoml.models.get(result.tag))
    gspc = store.load(info.id, symbols=["^GSPC"]).sort_values("date").reset_index(drop=True)
    rows = _served_rows(gspc[gspc["date"] >= "2017-01-01"].reset_index(drop=True), runner)
    odd = rows.iloc[:3].assign(features=recording.encode_features([0.5] * 7))
    served = pd.concat([rows, odd], ignore_index=True).assign(key=lambda f: [f"k{i}" for i in range(len(f))])
    frame = outcomes(served.to_dict("records"), store)
    finder = SeriesFinder(store)
    challenger = Challenger("direction_lightgbm", result.tag.partition(":")[2], result.card)
    (shadow,) = shadow_scores(frame, "direction_lightgbm", "v", [challenger], finder, 60)
    (production,) = scorecard(frame.iloc[: len(rows)], {("direction_lightgbm", "v"): result.card}, finder, 60)
    assert shadow.version == result.tag.partition(":")[2] and shadow.rows == production.rows
    assert shadow.live == pytest.approx(production.live, rel=1e-12)
    assert shadow.statement.endswith(f"3 of {len(frame[frame['status'] == 'realised'])} answers left out: their "
                                     "recorded feature row is not of the challenger's length")  # fmt: skip


def test_the_most_drifted_name_is_the_highest_against_its_own_alert_level(tmp_path, monkeypatch):
    """A calibrated feature with a large PSI but a larger level ranks below one past its own level; the metrics
    export both the PSI and each name's level, so a Prometheus rule can reproduce the monitor's verdict."""
    from monitoring.job import ModelStatus, MonitorRun
    from monitoring.live_drift import ModelDrift
    from monitoring.metrics import PUSHGATEWAY_VARIABLE, publish
    from monitoring.store import IngestReport

    daily = pd.DataFrame({"as_of": ["2018-06-01"] * 3, "name": ["sma_10_50", "rv_5", "prediction"],
                          "rows": [100] * 3, "psi": [6.3, 0.4, 0.1], "alert_at": [8.9, 0.25, 0.3],
                          "level": ["warn", "alert", "ok"]})  # fmt: skip
    drift = ModelDrift("volatility_lightgbm", "v", daily)
    assert drift.latest()["name"].tolist() == ["rv_5", "sma_10_50", "prediction"]
    status = ModelStatus("volatility_lightgbm", "v", None, drift=drift)
    monkeypatch.delenv(PUSHGATEWAY_VARIABLE, raising=False)
    publish(MonitorRun("2018-06-02T00:00:00+00:00", IngestReport(), 3, {"volatility_lightgbm": status},
                       pd.DataFrame()), tmp_path)  # fmt: skip
    text = (tmp_path / "mlops_monitor.prom").read_text()
    assert 'mlops_monitor_psi_alert_level{model="volatility_lightgbm",name="sma_10_50"} 8.9' in text
    assert 'mlops_monitor_psi{model="volatility_lightgbm",name="rv_5"} 0.4' in text


def test_served_drift_that_stopped_long_before_the_stored_bars_is_stale(embedded_snapshot):
    """Served rows ending 2018-06-01 against bars to 2018-12-31: the old days' alerts no longer describe the market
    (the monitor takes the drift over the latest bars instead); ten sessions behind is still current."""
    from monitoring.live_drift import ModelDrift, stale
    from monitoring.outcomes import SeriesFinder

    store, _ = embedded_snapshot
    finder = SeriesFinder(store)
    rows = pd.DataFrame({"scored_symbol": ["^GSPC", ""]})
    for last, expected in (("2018-06-01", "served rows end 2018-06-01, 151 sessions before the stored bars "
                            "(2018-12-31)"), ("2018-12-17", "")):  # fmt: skip
        daily = pd.DataFrame({"as_of": ["2018-05-01", last], "name": "rv_5", "rows": 100, "psi": 0.5,
                              "alert_at": 0.25, "level": "alert"})  # fmt: skip
        assert stale(ModelDrift("volatility_lightgbm", "v", daily), rows, finder, 10) == expected
