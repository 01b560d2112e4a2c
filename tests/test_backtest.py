"""Backtests after costs (training/evaluation/backtest.py) on answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.targets import forward_log_return, forward_realized_volatility
from training.evaluation.backtest import (
    break_even_bp,
    buy_and_hold,
    hold_at_least,
    long_flat,
    periods_frame,
    signal_backtest,
    statistics,
    volatility_targeting,
)


def one_symbol(realised: list[float], prediction: list[float]) -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-01", periods=len(realised))
    return pd.DataFrame({"date": dates, "symbol": "X", "realised": realised, "prediction": prediction})


def test_a_perfect_foresight_signal_earns_the_positive_periods() -> None:
    rng = np.random.default_rng(0)
    frame = pd.concat([one_symbol(list(rng.normal(0, 0.03, 400)), [0.0] * 400).assign(symbol=s) for s in ("A", "B")])
    frame["prediction"] = frame["realised"]
    result = signal_backtest(frame, horizon=5, threshold=0.0, baseline=None)
    path = result["paths"]["long_flat"]
    # by hand: every 5th business day, half the book in each symbol whose 5-day return is positive
    dates = pd.bdate_range("2020-01-01", periods=400)[::5]
    by_symbol = {s: rows.set_index("date")["realised"] for s, rows in frame.groupby("symbol")}
    expected = [sum(max(math.expm1(by_symbol[s][d]), 0.0) / 2 for s in ("A", "B")) for d in dates]
    assert list(path.gross.index) == list(dates)
    np.testing.assert_allclose(path.gross.to_numpy(), expected)
    gross = result["strategies"]["long_flat"]["by_cost"]["0"]
    assert gross["hit_rate"] == 1.0
    assert gross["max_drawdown"] == 0.0
    assert result["execution"] == "at the close of the signal's bar"


def test_a_signal_one_period_late_earns_nothing_special() -> None:
    rng = np.random.default_rng(8)
    frames = [one_symbol(list(rng.normal(0, 0.02, 2000)), [0.0] * 2000).assign(symbol=f"S{i}") for i in range(3)]
    frame = pd.concat(frames, ignore_index=True)
    frame["prediction"] = frame.groupby("symbol")["realised"].shift(1)  # yesterday's return: known, no edge
    result = signal_backtest(frame, horizon=1, threshold=0.0, baseline=None)
    late = result["paths"]["long_flat"]
    hold = result["paths"]["buy_and_hold"]
    assert abs(late.gross.mean() - hold.gross.mean() / 2) < 3 * late.gross.std() / np.sqrt(late.gross.size)
    assert result["strategies"]["long_flat"]["beats_benchmark"] in ("never", "below", "above")


def test_costs_reduce_returns_by_exactly_turnover_times_cost() -> None:
    frame = one_symbol([0.01, -0.02, 0.03, 0.01, -0.01], [1.0, -1.0, 1.0, 1.0, -1.0])
    path = long_flat(periods_frame(frame, 1), "prediction", 0.0)
    # positions 1, 0, 1, 1, 0: buy in, sell, buy, hold, sell
    np.testing.assert_array_equal(path.turnover.to_numpy(), [1, 1, 1, 0, 1])
    for cost in (5.0, 15.0):
        np.testing.assert_allclose(path.gross - path.net(cost), path.turnover * cost / 1e4)
    expected = np.array([math.expm1(0.01), 0, math.expm1(0.03), math.expm1(0.01), 0]) - np.array([1, 1, 1, 0, 1]) * 5e-4
    np.testing.assert_allclose(path.net(5.0).to_numpy(), expected)


def test_statistics_agree_with_a_hand_computed_example() -> None:
    frame = one_symbol([0.01, -0.02, 0.03, 0.01], [1.0, 1.0, 1.0, 1.0])
    path = long_flat(periods_frame(frame, 1), "prediction", 0.0)
    returns = np.expm1([0.01, -0.02, 0.03, 0.01])
    stats = statistics(path.gross, path, horizon=1)
    assert stats["annual_return"] == pytest.approx(np.prod(1 + returns) ** (252 / 4) - 1)
    assert stats["annual_volatility"] == pytest.approx(returns.std(ddof=1) * math.sqrt(252))
    assert stats["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * math.sqrt(252))
    wealth = np.cumprod(1 + returns)
    assert stats["max_drawdown"] == pytest.approx(np.min(wealth / np.maximum.accumulate(wealth) - 1))
    assert stats["hit_rate"] == 0.75
    assert stats["turnover_per_year"] == pytest.approx(252 / 4)


def test_a_position_is_kept_for_the_minimum_holding_period() -> None:
    np.testing.assert_array_equal(hold_at_least(np.array([1, 0, 1, 0, 0, 1]), 2), [1, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(hold_at_least(np.array([1, 0, 1, 0, 0, 1]), 1), [1, 0, 1, 0, 0, 1])


def test_the_break_even_cost_equalises_the_strategy_and_buy_and_hold() -> None:
    rng = np.random.default_rng(4)
    realised = rng.normal(0.0005, 0.01, 300)
    frame = one_symbol(list(realised), list(realised + rng.normal(0, 0.01, 300)))
    trades = periods_frame(frame, 1)
    strategy, benchmark = long_flat(trades, "prediction", 0.0), buy_and_hold(trades)
    cost, side = break_even_bp(strategy, benchmark)
    assert cost > 0 and side == "below"
    assert strategy.net(cost).mean() == pytest.approx(benchmark.net(cost).mean())
    frame["prediction"] = -frame["prediction"]  # the same signal turned around has no edge before costs
    assert break_even_bp(long_flat(periods_frame(frame, 1), "prediction", 0.0), benchmark) == (0.0, "never")


def test_a_strategy_that_trades_less_than_its_benchmark_wins_above_its_break_even() -> None:
    rng = np.random.default_rng(9)
    frame = one_symbol(list(rng.normal(0.001, 0.01, 300)), [1.0] * 300)  # always long: buys in once
    trades = periods_frame(frame, 1)
    calm = long_flat(trades, "prediction", 0.0)
    flip = frame.assign(prediction=np.tile([1.0, -1.0], 150))  # in and out every day, invested half the time
    busy = long_flat(periods_frame(flip, 1), "prediction", 0.0)
    cost, side = break_even_bp(calm, busy)
    if calm.gross.mean() < busy.gross.mean():
        assert side == "above" and cost > 0
    else:
        assert side == "always" and cost == math.inf
    cost, side = break_even_bp(busy, calm)
    assert side in ("never", "below")


def test_a_universe_gets_a_long_short_book_of_weight_one_a_side() -> None:
    rng = np.random.default_rng(5)
    frames = [one_symbol(list(rng.normal(0, 0.02, 60)), [0.0] * 60).assign(symbol=f"S{i}") for i in range(20)]
    frame = pd.concat(frames, ignore_index=True)
    frame["prediction"] = frame["realised"]
    result = signal_backtest(frame, horizon=1, threshold=0.0, baseline=None)
    path = result["paths"]["long_short"]
    np.testing.assert_allclose(path.exposure.to_numpy(), 2.0)
    assert result["strategies"]["long_short"]["by_cost"]["15"]["sharpe"] > 0


def test_volatility_targeting_with_a_perfect_forecast_meets_its_target() -> None:
    rng = np.random.default_rng(6)
    days = 252 * 6
    sigma = np.repeat([0.005, 0.02, 0.01, 0.03, 0.008, 0.015], 252)  # a calm year, a wild one, ...
    close = 100 * np.exp(np.cumsum(rng.normal(0, sigma)))
    dates = pd.bdate_range("2010-01-01", periods=days)
    frame = pd.DataFrame(
        {
            "date": dates,
            "symbol": "X",
            "realised": forward_log_return(close, 5),
            "perfect": forward_realized_volatility(close, 5),
            "constant": 0.2,
        }
    )
    result = volatility_targeting(frame, {"perfect": "perfect", "constant": "constant"}, horizon=5, max_leverage=50)
    perfect, constant = result["forecasts"]["perfect"], result["forecasts"]["constant"]
    assert perfect["tracking_rmse"] < 0.025  # the target is 10 %: only the realised noise of a 5-day sum is left
    assert constant["tracking_rmse"] > 3 * perfect["tracking_rmse"]
    assert perfect["symbol_years"] == 6


def test_volatility_targeting_caps_leverage_and_compares_books_on_the_same_rows() -> None:
    rng = np.random.default_rng(10)
    frame = one_symbol(list(rng.normal(0, 0.01, 300)), [0.0] * 300)
    frame["tiny"] = 0.01  # a 1 % forecast asks for 10x: capped at 2
    frame["gappy"] = np.where(np.arange(300) % 2 == 0, 0.2, np.nan)
    result = volatility_targeting(frame, {"tiny": "tiny", "gappy": "gappy"}, horizon=1)
    tiny, gappy = result["paths"]["tiny"], result["paths"]["gappy"]
    np.testing.assert_allclose(tiny.exposure.to_numpy(), 2.0)
    assert list(tiny.gross.index) == list(gappy.gross.index)  # only the rows where both forecast
    assert tiny.gross.size == 150
    empty = volatility_targeting(frame.assign(gappy=np.nan), {"tiny": "tiny", "gappy": "gappy"}, horizon=1)
    assert math.isnan(empty["forecasts"]["tiny"]["tracking_rmse"]) and empty["paths"] == {}
