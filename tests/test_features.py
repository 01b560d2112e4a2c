"""The feature pipeline: point-in-time by construction, window-invariant, and exact where values are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import DEFAULT_SPEC, Bars, validate_ohlcv
from features.pipeline import FeatureParams, feature_layout
from features.windows import ema_weights, exponential_average, rolling_skew, rolling_std
from tests.conftest import make_bars

SPEC = DEFAULT_SPEC


def bars_of(frame: pd.DataFrame) -> Bars:
    return Bars.from_frame(validate_ohlcv(frame))


histories = st.builds(
    make_bars,
    n=st.integers(min_value=1, max_value=SPEC.min_bars + 120),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    volatility=st.sampled_from([0.0005, 0.01, 0.05]),
    flat_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    zero_volume_fraction=st.sampled_from([0.0, 0.5, 1.0]),
)
property_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@property_settings
@given(history=histories, data=st.data())
def test_features_on_a_prefix_equal_the_same_rows_of_the_full_history(
    history: pd.DataFrame, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(min_value=1, max_value=len(history)), label="cut")
    full = SPEC.compute(bars_of(history))
    prefix = SPEC.compute(bars_of(history.iloc[:cut]))
    np.testing.assert_array_equal(prefix, full[:cut])


@property_settings
@given(history=histories, future=histories)
def test_appending_future_bars_never_changes_past_rows(history: pd.DataFrame, future: pd.DataFrame) -> None:
    # continue the history with bars whose dates come after it and whose prices differ
    future = future.copy()
    future["date"] = pd.bdate_range(history["date"].iloc[-1] + pd.offsets.BDay(1), periods=len(future))
    extended = pd.concat([history, future], ignore_index=True)
    before = SPEC.compute(bars_of(history))
    after = SPEC.compute(bars_of(extended))
    np.testing.assert_array_equal(after[: len(history)], before)


@property_settings
@given(history=histories.filter(lambda f: len(f) >= SPEC.min_bars), data=st.data())
def test_a_window_of_min_bars_gives_the_same_row_as_the_full_history(
    history: pd.DataFrame, data: st.DataObject
) -> None:
    t = data.draw(st.integers(min_value=SPEC.lookback, max_value=len(history) - 1), label="t")
    full = SPEC.compute(bars_of(history))
    window = bars_of(history.iloc[t - SPEC.lookback : t + 1].reset_index(drop=True))
    np.testing.assert_array_equal(SPEC.compute_latest(window), full[t])


def test_the_lookback_is_exact() -> None:
    matrix = SPEC.compute(bars_of(make_bars(SPEC.min_bars + 10, seed=3)))
    complete = np.isfinite(matrix).all(axis=1)
    assert not complete[: SPEC.lookback].any()
    assert complete[SPEC.lookback :].all()
    # each feature becomes available exactly after the number of bars its layout declares
    for column, (name, prior) in enumerate(feature_layout(SPEC.params)):
        first = int(np.flatnonzero(np.isfinite(matrix[:, column]))[0])
        assert first == prior, name


def test_features_are_finite_on_the_embedded_history(embedded_bars: pd.DataFrame) -> None:
    for _, group in embedded_bars.groupby("symbol"):
        matrix = SPEC.compute(bars_of(group.drop(columns="symbol").reset_index(drop=True)))
        assert matrix.shape == (5031, len(SPEC.names))
        assert np.isfinite(matrix[SPEC.lookback :]).all()


def test_about_thirty_scale_free_features() -> None:
    assert 28 <= len(SPEC.names) <= 40
    assert len(set(SPEC.names)) == len(SPEC.names)
    frame = make_bars(400, seed=11)
    scaled = frame.copy()
    scaled[["open", "high", "low", "close"]] *= 1234.5
    scaled["volume"] *= 1.0  # volume enters through log1p ratios and z-scores
    np.testing.assert_allclose(
        SPEC.compute(bars_of(scaled))[SPEC.lookback :],
        SPEC.compute(bars_of(frame))[SPEC.lookback :],
        rtol=1e-9,
        atol=1e-12,
    )


def column(matrix: np.ndarray, name: str) -> np.ndarray:
    return matrix[:, SPEC.names.index(name)]


def test_known_values_of_return_volatility_and_bar_shape_features() -> None:
    frame = make_bars(SPEC.min_bars + 5, seed=5)
    matrix = SPEC.compute(bars_of(frame))
    c, o, h, low = (frame[k].to_numpy() for k in ("close", "open", "high", "low"))
    t = len(frame) - 1
    assert column(matrix, "ret_1")[t] == pytest.approx(np.log(c[t] / c[t - 1]), rel=1e-12)
    assert column(matrix, "ret_21")[t] == pytest.approx(np.log(c[t] / c[t - 21]), rel=1e-12)
    r = np.diff(np.log(c))
    assert column(matrix, "rv_21")[t] == pytest.approx(np.sqrt(np.mean(r[-21:] ** 2) * 252), rel=1e-12)
    assert column(matrix, "gap")[t] == pytest.approx(np.log(o[t] / c[t - 1]), rel=1e-12)
    assert column(matrix, "range")[t] == pytest.approx(np.log(h[t] / low[t]), rel=1e-12)
    assert column(matrix, "close_location")[t] == pytest.approx((c[t] - low[t]) / (h[t] - low[t]), rel=1e-12)
    assert column(matrix, "dist_high_252")[t] == pytest.approx(np.log(c[t] / h[-252:].max()), rel=1e-12)
    assert column(matrix, "close_sma_50")[t] == pytest.approx(np.log(c[t] / c[-50:].mean()), rel=1e-12)
    gains, losses = np.maximum(r[-14:], 0).mean(), np.maximum(-r[-14:], 0).mean()
    assert column(matrix, "rsi_14")[t] == pytest.approx(gains / (gains + losses), rel=1e-12)


def test_rsi_of_a_rising_market_is_one_and_flat_is_a_half() -> None:
    n = SPEC.min_bars
    rising = pd.DataFrame(
        {
            "date": pd.bdate_range("2021-01-01", periods=n),
            "open": np.linspace(100, 200, n),
            "close": np.linspace(100, 200, n) * 1.001,
            "volume": 1e6,
        }
    )
    rising["high"] = rising["close"] * 1.01
    rising["low"] = rising["open"] * 0.99
    flat = make_bars(n, flat_fraction=1.0)
    assert column(SPEC.compute(bars_of(rising)), "rsi_14")[-1] == 1.0
    last_flat = SPEC.compute(bars_of(flat))[-1]
    assert column(last_flat[None], "rsi_14")[0] == 0.5
    assert column(last_flat[None], "rv_5")[0] == 0.0
    assert column(last_flat[None], "bollinger_z_20")[0] == 0.0
    assert column(last_flat[None], "close_location")[0] == 0.5


def test_calendar_features() -> None:
    frame = make_bars(5, start="2024-01-01")  # Monday 1 January 2024
    matrix = SPEC.compute(bars_of(frame))
    np.testing.assert_array_equal(column(matrix, "day_of_week"), [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(column(matrix, "month_sin"), 0.0, atol=1e-15)
    np.testing.assert_array_equal(column(matrix, "month_cos"), 1.0)


def test_truncated_exponential_average_matches_pandas_ewm_on_its_window() -> None:
    x = np.random.default_rng(1).normal(size=200)
    weights = ema_weights(12)
    assert weights.shape == (36,)
    assert weights.sum() == pytest.approx(1.0)
    ours = exponential_average(x, 12)
    assert np.isnan(ours[:35]).all()
    reference = [pd.Series(x[t - 35 : t + 1]).ewm(span=12, adjust=True).mean().iloc[-1] for t in range(35, 200)]
    np.testing.assert_allclose(ours[35:], reference, rtol=1e-12)


def test_rolling_std_and_skew_match_pandas() -> None:
    x = np.random.default_rng(2).normal(size=300)
    np.testing.assert_allclose(rolling_std(x, 21), pd.Series(x).rolling(21).std().to_numpy(), rtol=1e-10)
    expected = pd.Series(x).rolling(63).skew().to_numpy()  # unbiased; convert ours for comparison
    n = 63
    ours_unbiased = rolling_skew(x, n) * np.sqrt(n * (n - 1)) / (n - 2)
    np.testing.assert_allclose(ours_unbiased, expected, rtol=1e-8)


def test_different_params_give_a_different_layout() -> None:
    params = FeatureParams(return_lags=(1, 3))
    names = [name for name, _ in feature_layout(params)]
    assert names[:2] == ["ret_1", "ret_3"]


@property_settings
@given(history=histories, data=st.data())
def test_computing_only_the_last_rows_gives_the_same_values(history: pd.DataFrame, data: st.DataObject) -> None:
    rows = data.draw(st.integers(min_value=1, max_value=len(history) + 3), label="rows")
    bars = bars_of(history)
    full = SPEC.compute(bars)
    np.testing.assert_array_equal(SPEC.compute(bars, rows=rows), full[-rows:])
