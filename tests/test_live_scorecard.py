"""Realised outcomes and the live scorecard (issue 16): recorded predictions joined with the stored bars by training's
own target definitions, and scored as the walk-forward cards are, beside the baselines, against the folds' range."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from bentos import recording
from data.snapshots import SnapshotInfo, SnapshotStore
from features import Bars
from monitoring.outcomes import PENDING, REALISED, UNSCORABLE, SeriesFinder, outcomes
from monitoring.scorecard import MIN_ROWS, band, scorecard
from training.evaluation.metrics import classification_metrics, regression_metrics
from training.run import TrainingRun


def _rows(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    return [r | {"key": f"k{i}", "recorded_at": f"t{i}", "request_id": ""} for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def gspc(embedded_snapshot: tuple[SnapshotStore, SnapshotInfo]) -> pd.DataFrame:
    store, info = embedded_snapshot
    return store.load(info.id, symbols=["^GSPC"]).sort_values("date").reset_index(drop=True)


def _day(frame: pd.DataFrame, i: int) -> str:
    return str(frame["date"].iloc[i].date())


def test_realised_values_are_training_targets_computed_by_hand(embedded_snapshot, gspc):
    store, _ = embedded_snapshot
    i = 4000
    close = gspc["close"].to_numpy()
    d = _day(gspc, i)
    rows = _rows(
        recording.row("predict_return", "return_lightgbm", "v", d, 5, 0.01, symbol="^GSPC"),
        recording.row("predict_direction", "direction_lightgbm", "v", d, 1, 0.6, symbol="^GSPC"),
        recording.row("predict_volatility", "volatility_lightgbm", "v", d, 5, 0.2, symbol="^GSPC"),
        recording.row(
            "forecast_price",
            "price_prophet",
            "v",
            d,
            3,
            1.0,
            symbol="^GSPC",
            label=repr(float(close[i])),
            target_date=_day(gspc, i + 3),
        ),
        recording.row("detect_regime", "regime_hmm", "v", d, 0, 1, symbol="^GSPC", label="normal"),
    )
    frame = outcomes(rows, store)
    assert list(frame["status"]) == [REALISED] * 5
    returns = np.diff(np.log(close[i : i + 6]))
    expected = [
        np.log(close[i + 5] / close[i]),
        float(close[i + 1] > close[i]),
        np.sqrt(np.mean(returns**2) * 252),
        close[i + 3],
        np.log(close[i + 1] / close[i]),
    ]
    assert frame["realised"].to_numpy() == pytest.approx(expected, rel=1e-12)
    assert list(frame["realised_date"]) == [_day(gspc, i + k) for k in (5, 1, 5, 3, 1)]


def test_pending_and_unscorable_rows_say_why(embedded_snapshot, gspc):
    store, _ = embedded_snapshot
    last = len(gspc) - 1
    rows = _rows(
        recording.row("predict_return", "return_lightgbm", "v", _day(gspc, last - 2), 5, 0.0, symbol="^GSPC"),
        recording.row("predict_direction", "direction_lightgbm", "v", "2030-01-02", 1, 0.5, symbol="^GSPC"),
        recording.row("predict_direction", "direction_lightgbm", "v", "2015-01-03", 1, 0.5, symbol="^GSPC"),  # Saturday
        recording.row("predict_direction", "direction_lightgbm", "v", "2015-01-05", 1, 0.5, symbol="AAPL"),
        recording.row("predict_direction", "direction_lightgbm", "v", "2015-01-05", 1, 0.5),  # no symbol, no bars
    )
    frame = outcomes(rows, store)
    assert list(frame["status"]) == [PENDING, PENDING, UNSCORABLE, UNSCORABLE, UNSCORABLE]
    assert "end on" in frame["reason"][0]
    assert "2015-01-03 is not a bar of ^GSPC" in frame["reason"][2]
    assert "no stored snapshot holds AAPL" in frame["reason"][3]
    assert "without its bars' digest" in frame["reason"][4]
    assert frame["realised"].isna().all()


def test_a_window_without_a_symbol_is_matched_by_its_bars_exactly_or_not_at_all(embedded_snapshot, gspc):
    store, info = embedded_snapshot
    ixic = store.load(info.id, symbols=["^IXIC"]).sort_values("date").reset_index(drop=True)
    i = 3000
    window = Bars.from_frame(ixic.iloc[i - 251 : i + 1])
    altered = Bars.from_frame(ixic.iloc[i - 251 : i + 1].assign(volume=lambda f: f["volume"] + np.eye(252)[0]))
    d = _day(ixic, i)
    rows = _rows(
        recording.row(
            "predict_direction", "direction_lightgbm", "v", d, 1, 0.5, window=recording.window_digest(window)
        ),
        recording.row(
            "predict_direction", "direction_lightgbm", "v", d, 1, 0.5, window=recording.window_digest(altered)
        ),
    )
    frame = outcomes(rows, store)
    assert list(frame["status"]) == [REALISED, UNSCORABLE]
    assert frame["scored_symbol"][0] == "^IXIC" and bool(frame["matched_by_bars"][0])
    close = ixic["close"].to_numpy()
    assert frame["realised"][0] == float(close[i + 1] > close[i])
    assert "match no stored series" in frame["reason"][1]


def _year_of_answers(frame: pd.DataFrame, model: str, version: str, horizon: int, values: np.ndarray) -> list[dict]:
    start = len(frame) - 300
    return _rows(*(recording.row("x", model, version, _day(frame, start + k), horizon, float(v), symbol="^GSPC")
                   for k, v in enumerate(values)))  # fmt: skip


def test_scorecard_equals_the_metrics_computed_directly(embedded_snapshot, gspc, quick_run: TrainingRun):
    store, _ = embedded_snapshot
    cards = {r.name: r.card for r in quick_run.results}
    close = gspc["close"].to_numpy()
    start = len(gspc) - 300
    realised = np.log(close[start + 5 : start + 255] / close[start : start + 250])
    rng = np.random.default_rng(0)
    guess = 0.3 * realised + rng.normal(0, 0.01, realised.size)
    up = (close[start + 1 : start + 251] > close[start : start + 250]).astype(float)
    p_up = np.clip(0.5 + 0.1 * (up - 0.5) + rng.normal(0, 0.1, up.size), 0.01, 0.99)
    rows = _year_of_answers(gspc, "return_lightgbm", "v1", 5, guess) + _year_of_answers(
        gspc, "direction_lightgbm", "v1", 1, p_up
    )
    for i, r in enumerate(rows):
        r["key"] = f"k{i:04d}"
    frame = outcomes(rows, store)
    assert (frame["status"] == REALISED).all()
    scores = {s.model: s for s in scorecard(frame, {("return_lightgbm", "v1"): cards["return_lightgbm"],
                                                    ("direction_lightgbm", "v1"): cards["direction_lightgbm"]},
                                            SeriesFinder(store), window_days=60)}  # fmt: skip
    # the historical mean: the target's mean over the card's training period, on the stored bars
    card = cards["return_lightgbm"]
    dates = gspc["date"].dt.strftime("%Y-%m-%d").to_numpy()
    target = np.full(close.size, np.nan)
    target[:-5] = np.log(close[5:] / close[:-5])
    inside = (dates >= card.date_start[:10]) & (dates <= card.date_end[:10]) & np.isfinite(target)
    mean = np.full(realised.size, target[inside].mean())
    expected = regression_metrics(realised, guess, mean)
    ret = scores["return_lightgbm"]
    assert ret.rows == 250
    assert ret.live == pytest.approx(expected, rel=1e-9)
    assert ret.baselines["zero"] == pytest.approx(regression_metrics(realised, np.zeros_like(realised), mean))
    assert ret.band == band(card)
    assert ret.band == (min(f["metrics"]["r2_vs_mean"] for f in card.walk_forward["per_fold"]),
                        max(f["metrics"]["r2_vs_mean"] for f in card.walk_forward["per_fold"]))  # fmt: skip
    last = ret.rolling.iloc[-1]
    assert last["rows"] == 60
    assert last["model"] == pytest.approx(regression_metrics(realised[-60:], guess[-60:], mean[-60:])["r2_vs_mean"])
    direction = scores["direction_lightgbm"]
    assert direction.live == pytest.approx(classification_metrics(up, p_up), rel=1e-9)
    # the majority baseline: a constant P(up) at the training period's up-rate, on the stored bars
    card = cards["direction_lightgbm"]
    rose = (close[1:] > close[:-1]).astype(float)
    inside = (dates[:-1] >= card.date_start[:10]) & (dates[:-1] <= card.date_end[:10])
    majority = np.full(up.size, rose[inside].mean())
    assert direction.baselines["majority"] == pytest.approx(classification_metrics(up, majority), rel=1e-9)
    assert direction.rolling["rows"].min() >= MIN_ROWS


def test_a_model_worse_than_its_folds_is_flagged_since_the_day_it_fell(embedded_snapshot, gspc, quick_run):
    store, _ = embedded_snapshot
    card = next(r.card for r in quick_run.results if r.name == "return_lightgbm")
    close = gspc["close"].to_numpy()
    start = len(gspc) - 300
    realised = np.log(close[start + 5 : start + 255] / close[start : start + 250])
    guess = realised.copy()  # perfect for 150 days, then the sign flipped and doubled
    guess[150:] = -2 * realised[150:]
    frame = outcomes(_year_of_answers(gspc, "return_lightgbm", "v1", 5, guess), store)
    (score,) = scorecard(frame, {("return_lightgbm", "v1"): card}, SeriesFinder(store), window_days=40)
    low = score.band[0]
    rolling = score.rolling.set_index("as_of")["model"]
    assert rolling.iloc[-1] < low
    first_below = rolling[rolling < low].index[0]
    assert (rolling.loc[first_below:] < low).all()
    assert score.below_band_since == first_below
    assert score.statement.startswith(f"live is below what walk-forward promised since {first_below}")
    best = score.rolling[["zero", "historical_mean"]].max(axis=1).to_numpy()
    trailing = (score.rolling["model"].to_numpy() < best)[::-1]
    assert score.worse_than_baseline_days == (trailing.size if trailing.all() else int(np.argmin(trailing))) > 0


def test_live_signal_metrics_are_the_ic_of_the_served_predictions(embedded_snapshot, gspc, quick_run):
    """One symbol: the time-series IC is the correlation over the served days (Pearson of the values; Spearman's of
    their ranks), the direction's taken against the next day's return as its card's is; the card's beside it."""
    store, _ = embedded_snapshot
    cards = {r.name: r.card for r in quick_run.results}
    close = gspc["close"].to_numpy()
    start = len(gspc) - 300
    realised = np.log(close[start + 5 : start + 255] / close[start : start + 250])
    next_day = np.log(close[start + 1 : start + 251] / close[start : start + 250])
    rng = np.random.default_rng(1)
    guess = 0.3 * realised + rng.normal(0, 0.01, realised.size)
    p_up = np.clip(0.5 + 3 * next_day + rng.normal(0, 0.05, next_day.size), 0.01, 0.99)
    rows = _year_of_answers(gspc, "return_lightgbm", "v1", 5, guess) + _year_of_answers(
        gspc, "direction_lightgbm", "v1", 1, p_up
    )
    for i, r in enumerate(rows):
        r["key"] = f"k{i:04d}"
    frame = outcomes(rows, store)
    keys = {(m, "v1"): cards[m] for m in ("return_lightgbm", "direction_lightgbm")}
    scores = {s.model: s for s in scorecard(frame, keys, SeriesFinder(store), window_days=60)}
    for model, p, y in (("return_lightgbm", guess, realised), ("direction_lightgbm", p_up, next_day)):
        signal = scores[model].signal
        assert signal["model"]["kind"] == "time_series"
        assert signal["model"]["pearson"]["mean"] == pytest.approx(np.corrcoef(p, y)[0, 1], rel=1e-9), model
        spearman = pd.Series(p).corr(pd.Series(y), method="spearman")
        assert signal["model"]["rank"]["mean"] == pytest.approx(spearman, rel=1e-9), model
        assert signal["model"]["rank"]["evidence"] == "positive"
        walked = cards[model].quant["ic"]["rank"]
        assert signal["walk_forward"]["rank"]["mean"] == walked["mean"]


def test_volatility_price_and_regime_scores_equal_a_direct_computation(embedded_snapshot, gspc, quick_run):
    """Volatility against RiskMetrics' EWMA worked out here, Prophet's MAPE against the random walk (forecasts past
    the card's horizon left out), and the regimes' realised volatility."""
    store, _ = embedded_snapshot
    cards = {r.name: r.card for r in quick_run.results}
    close = gspc["close"].to_numpy()
    start = len(gspc) - 300
    r = np.concatenate(([np.nan], np.diff(np.log(close))))
    variance, ewma = np.mean(r[1:31] ** 2), np.full(close.size, np.nan)
    for t in range(31, close.size):
        variance = 0.94 * variance + 0.06 * r[t] ** 2
        ewma[t] = variance
    days = np.arange(start, start + 250)
    realised_vol = np.array([np.sqrt(np.mean(r[i + 1 : i + 6] ** 2) * 252) for i in days])
    forecast = np.sqrt(ewma[days] * 252) * np.exp(np.random.default_rng(2).normal(0, 0.2, days.size))
    horizon = cards["price_prophet"].horizon
    steps = np.array([1 + k % (horizon + 2) for k in range(days.size)])  # some past the card's horizon
    price = close[days] * (1 + np.random.default_rng(3).normal(0, 0.02, days.size))
    states = (realised_vol > np.median(realised_vol)).astype(int)  # served "turbulent" on the wilder days
    rows = _year_of_answers(gspc, "volatility_lightgbm", "v1", 5, forecast)
    for k, i in enumerate(days):
        rows += _rows(recording.row("forecast_price", "price_prophet", "v1", _day(gspc, i), int(steps[k]),
                                    float(price[k]), symbol="^GSPC", label=repr(float(close[i])),
                                    target_date=_day(gspc, i + steps[k])))  # fmt: skip
    rows += _year_of_answers(gspc, "regime_hmm", "v1", 0, states)
    for i, row in enumerate(rows):
        row["key"] = f"k{i:04d}"
    frame = outcomes(rows, store)
    keys = {(m, "v1"): cards[m] for m in ("volatility_lightgbm", "price_prophet", "regime_hmm")}
    scores = {s.model: s for s in scorecard(frame, keys, SeriesFinder(store), window_days=60)}

    vol = scores["volatility_lightgbm"]
    baseline = np.sqrt(ewma[days] * 252)
    for got, f in ((vol.live, forecast), (vol.baselines["ewma"], baseline)):
        assert got["mse"] == pytest.approx(np.mean((realised_vol - f) ** 2), rel=1e-9)
        q = realised_vol**2 / f**2
        assert got["qlike"] == pytest.approx(np.mean(q - np.log(q) - 1), rel=1e-9)
        assert got["n"] == days.size
    assert vol.signal["ewma"]["pearson"]["mean"] == pytest.approx(np.corrcoef(baseline, realised_vol)[0, 1])

    prophet, kept = scores["price_prophet"], steps <= horizon
    target = close[days + steps]
    assert prophet.rows == kept.sum()
    assert prophet.live["mape"] == pytest.approx(np.mean(np.abs(price[kept] / target[kept] - 1)) * 100, rel=1e-9)
    assert prophet.baselines["random_walk"]["mape"] == pytest.approx(
        np.mean(np.abs(close[days][kept] / target[kept] - 1)) * 100, rel=1e-9
    )
    assert prophet.signal is None

    regimes = scores["regime_hmm"].regimes
    next_day = r[days + 1]
    for state in (0, 1):
        expected = np.sqrt(np.mean(next_day[states == state] ** 2) * 252)
        assert regimes["states"][state]["volatility"] == pytest.approx(expected, rel=1e-12)
    assert regimes["ordered"] is True


def test_a_live_metric_trailing_its_baseline_for_n_days_is_an_alert_rule(embedded_snapshot, gspc, quick_run):
    """The monitor's second rule (``monitoring/job.alerts``): the rolling metric worse than its best baseline on the
    last ``below_baseline_days`` as-of dates in a row holds; one day fewer than the rule asks for does not."""
    from monitoring.job import ModelStatus, MonitorSettings, alerts

    store, _ = embedded_snapshot
    card = next(r.card for r in quick_run.results if r.name == "return_lightgbm")
    close = gspc["close"].to_numpy()
    start = len(gspc) - 300
    realised = np.log(close[start + 5 : start + 255] / close[start : start + 250])
    guess = np.where(np.arange(realised.size) < 200, realised, -realised)  # right, then wrong for 50 days
    frame = outcomes(_year_of_answers(gspc, "return_lightgbm", "v1", 5, guess), store)
    (score,) = scorecard(frame, {("return_lightgbm", "v1"): card}, SeriesFinder(store), window_days=20)
    days = score.worse_than_baseline_days
    assert 20 <= days <= 50
    status = ModelStatus("return_lightgbm", "v1", card, score=score)
    (found,) = alerts(status, MonitorSettings(below_baseline_days=days))
    assert found == f"live {score.metric} worse than its best baseline on the last {days} days (rule: {days})"
    assert alerts(status, MonitorSettings(below_baseline_days=days + 1)) == []
