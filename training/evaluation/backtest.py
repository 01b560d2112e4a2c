"""Backtests after costs: what a signal earns when traded, and what a volatility forecast buys a risk-targeting book.

Every strategy trades on the walk-forward test's out-of-sample predictions only, at the signal's horizon: on every
``horizon``-th test date (``signal.rebalance_dates``) it sets its target weights from that date's predictions and
holds them until the next rebalance, earning each symbol's realised return over the horizon
(``exp(forward log return) - 1``), trading at the close of the bar the signal is computed on (the card's
``execution``). Weights are reset to their targets at each rebalance (drift inside a period is not traded). The
rebalance dates are those of the test's calendar (the union of the symbols' dates): a symbol without a bar on one
is out of the book for that period, and one with gaps in its bars earns its return over ``horizon`` of its own bars.
Weights are formed from every symbol with a prediction on the date; one whose forward return is unknown (a delisting)
earns nothing over the period, as if sold at its last close; dates on which no symbol's return is known (the test's
last ``horizon`` days) are not traded. Costs are proportional, charged on each side: a period pays
``cost × turnover``, turnover being the sum of the absolute weight changes (entering from cash counts; the first
period buys in), so costs reduce returns by exactly turnover × cost.

* **long/flat**: each symbol long when its signal is above the threshold (a return forecast above 0, P(up) above
  0.5), else in cash; equally weighted over the symbols on the date. A position is kept at least ``min_hold_days``
  (in whole periods) before it may change.
* **long/short** (a universe: at least ``signal.MIN_CROSS_SECTION`` symbols a date): long the top prediction
  quantile, short the bottom one, equally weighted within each side.
* **buy-and-hold**: every symbol long all the time, equally weighted (the long/flat strategy's benchmark).
* **volatility targeting**: per symbol, exposure ``min(target / forecast, max_leverage)`` with the annualised
  volatility forecast for the horizon; judged per symbol and calendar year by the realised volatility's distance
  from the target (root mean square), and by the Sharpe ratio and drawdown after costs, median over symbols.

Risk statistics are empyrical's (``annual_return`` as CAGR, ``annual_volatility``, ``sharpe_ratio`` with a zero
risk-free rate, ``max_drawdown``), annualised with ``252 / horizon`` periods a year. The **break-even cost** is the
cost per side at which the strategy's mean period return after costs falls to its benchmark's (buy-and-hold for
long/flat, cash for long/short), with ``beats_benchmark`` saying on which side of it the strategy is ahead: below it
(it earns more and trades more), above it (it earns less before costs but trades less), at any cost or at none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import empyrical
import numpy as np
import pandas as pd

from training.evaluation.signal import QUANTILES, buckets, is_cross_sectional, rebalance_dates

TRADING_DAYS = 252
#: Proportional costs per side, in basis points: Qlib's defaults (5 to open, 15 to close) as two levels.
DEFAULT_COSTS_BP: tuple[float, ...] = (5.0, 15.0)
VOLATILITY_TARGET = 0.10
MAX_LEVERAGE = 2.0


@dataclass(frozen=True)
class Returns:
    """A strategy's periods: gross return, turnover and gross exposure per rebalance date (one row per period)."""

    gross: pd.Series
    turnover: pd.Series
    exposure: pd.Series

    def net(self, cost_bp: float) -> pd.Series:
        """Period returns after ``cost_bp`` basis points per side: gross − turnover × cost."""
        return self.gross - self.turnover * cost_bp / 1e4


def periods_frame(frame: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The rows on the rebalance dates, with each symbol's simple return over the period (``period_return``; NaN
    where unknown), leaving out the dates on which no symbol's return is known."""
    trades = frame[frame["date"].isin(rebalance_dates(frame["date"], horizon))]
    known = trades.groupby("date")["realised"].transform(lambda r: r.notna().any()).to_numpy(bool)
    trades = trades[known]
    return trades.assign(period_return=np.expm1(trades["realised"].to_numpy(float)))


def hold_at_least(positions: np.ndarray, periods: int) -> np.ndarray:
    """``positions`` (one symbol's, in period order) where a change is allowed only after ``periods`` periods held."""
    held = positions.astype(float).copy()
    since = 0
    for t in range(1, held.size):
        since += 1
        if held[t] != held[t - 1] and since < periods:
            held[t] = held[t - 1]
        elif held[t] != held[t - 1]:
            since = 0
    return held


def run_weights(trades: pd.DataFrame, weights: pd.Series) -> Returns:
    """A path from target weights per (date, symbol) row of ``trades`` (a symbol absent on a date weighs 0)."""
    table = trades.assign(weight=weights.to_numpy(float))
    w = table.pivot_table(index="date", columns="symbol", values="weight", aggfunc="first").fillna(0.0)
    r = table.pivot_table(index="date", columns="symbol", values="period_return", aggfunc="first").reindex_like(w)
    gross = (w * r.fillna(0.0)).sum(axis=1)
    previous = w.shift(1).fillna(0.0)  # the first period buys in from cash
    return Returns(gross, (w - previous).abs().sum(axis=1), w.abs().sum(axis=1))


def long_flat(trades: pd.DataFrame, column: str, threshold: float, min_hold_periods: int = 1) -> Returns:
    """Long each symbol whose ``column`` is above ``threshold``, else flat, equally weighted over the date's symbols."""
    trades = trades.sort_values(["symbol", "date"])
    positions = (trades[column].to_numpy(float) > threshold).astype(float)
    if min_hold_periods > 1:
        for rows in trades.groupby("symbol", sort=False).indices.values():
            positions[rows] = hold_at_least(positions[rows], min_hold_periods)
    per_date = trades.groupby("date")["symbol"].transform("count").to_numpy(float)
    return run_weights(trades, pd.Series(positions / per_date, index=trades.index))


def buy_and_hold(trades: pd.DataFrame) -> Returns:
    per_date = trades.groupby("date")["symbol"].transform("count").to_numpy(float)
    return run_weights(trades, pd.Series(1.0 / per_date, index=trades.index))


def long_short(trades: pd.DataFrame, column: str, quantiles: int = QUANTILES) -> Returns:
    """Long the top ``column`` quantile and short the bottom one on every date, each side weighing 1."""
    bucket = buckets(trades.rename(columns={column: "prediction"})[["date", "symbol", "prediction"]], True, quantiles)
    top, bottom = bucket == quantiles, bucket == 1
    dates = trades["date"].to_numpy()
    n_top = pd.Series(top).groupby(dates).transform("sum").to_numpy(float)
    n_bottom = pd.Series(bottom).groupby(dates).transform("sum").to_numpy(float)
    weights = np.where(top, 1 / np.maximum(n_top, 1), 0.0) - np.where(bottom, 1 / np.maximum(n_bottom, 1), 0.0)
    return run_weights(trades, pd.Series(weights, index=trades.index))


def statistics(returns: pd.Series, path: Returns, horizon: int) -> dict[str, float]:
    """Empyrical's annual return, volatility, Sharpe and maximum drawdown of period returns; turnover a year; the
    hit rate (share of invested periods that made money) and the mean gross exposure."""
    per_year = TRADING_DAYS / horizon
    values = returns.to_numpy(float)
    invested = path.exposure.to_numpy(float) > 0
    return {
        "annual_return": float(empyrical.annual_return(values, annualization=per_year)),
        "annual_volatility": float(empyrical.annual_volatility(values, annualization=per_year)),
        "sharpe": float(empyrical.sharpe_ratio(values, annualization=per_year)),
        "max_drawdown": float(empyrical.max_drawdown(values)),
        "turnover_per_year": float(path.turnover.mean() * per_year),
        "hit_rate": float(np.mean(values[invested] > 0)) if invested.any() else float("nan"),
        "exposure": float(path.exposure.mean()),
        "periods": int(values.size),
    }


def break_even_bp(strategy: Returns, benchmark: Returns | None) -> tuple[float, str]:
    """Cost per side (bp) at which the strategy's mean period return after costs equals the benchmark's after the same
    costs (cash when None), and on which side of it the strategy is ahead: ``"below"`` (an edge before costs, eaten
    by more trading), ``"above"`` (less return before costs, made up by less trading), ``"always"`` or ``"never"``
    (then the cost is inf or 0)."""
    edge = strategy.gross.mean() - (benchmark.gross.mean() if benchmark else 0.0)
    extra_turnover = strategy.turnover.mean() - (benchmark.turnover.mean() if benchmark else 0.0)
    if extra_turnover > 0:
        return (float(edge / extra_turnover * 1e4), "below") if edge > 0 else (0.0, "never")
    if extra_turnover < 0:
        return (float(edge / extra_turnover * 1e4), "above") if edge < 0 else (math.inf, "always")
    return (math.inf, "always") if edge > 0 else (0.0, "never")


def signal_backtest(
    frame: pd.DataFrame,
    horizon: int,
    threshold: float,
    baseline: str | None,
    costs_bp: Sequence[float] = DEFAULT_COSTS_BP,
    min_hold_days: int | None = None,
) -> dict[str, Any]:
    """The card's ``backtest`` of a direction or return signal: long/flat (and long/short in a universe) on the
    ``prediction`` column, buy-and-hold, and the same strategy on ``baseline_<baseline>``'s signal, at every cost.

    ``frame``: ``date``, ``symbol``, ``prediction``, ``realised`` (forward log return over the horizon) and the
    baseline's column. Also returns the paths (``"paths"``, for the report's equity curves; not for the card)."""
    min_hold = max(1, math.ceil((min_hold_days or horizon) / horizon))
    trades = periods_frame(frame.dropna(subset=["prediction"]), horizon)
    paths: dict[str, Returns] = {
        "long_flat": long_flat(trades, "prediction", threshold, min_hold),
        "buy_and_hold": buy_and_hold(trades),
    }
    if baseline is not None and f"baseline_{baseline}" in trades:
        paths[f"long_flat_{baseline}"] = long_flat(trades, f"baseline_{baseline}", threshold, min_hold)
    if is_cross_sectional(trades):
        paths["long_short"] = long_short(trades, "prediction")
    results: dict[str, Any] = {
        "horizon": horizon,
        "execution": "at the close of the signal's bar",
        "threshold": threshold,
        "min_hold_periods": min_hold,
        "costs_bp": list(costs_bp),
        "strategies": {},
    }
    for name, path in paths.items():
        benchmark = None if name == "long_short" else paths["buy_and_hold"]
        results["strategies"][name] = {"by_cost": {f"{c:g}": statistics(path.net(c), path, horizon)
                                                   for c in (0.0, *costs_bp)}}  # fmt: skip
        if name != "buy_and_hold":
            cost, side = break_even_bp(path, benchmark)
            results["strategies"][name] |= {"break_even_bp": cost, "beats_benchmark": side}
    results["paths"] = paths
    return results


def volatility_targeting(
    frame: pd.DataFrame,
    forecasts: Mapping[str, str],
    horizon: int,
    target: float = VOLATILITY_TARGET,
    max_leverage: float = MAX_LEVERAGE,
    costs_bp: Sequence[float] = DEFAULT_COSTS_BP,
) -> dict[str, Any]:
    """The card's ``vol_targeting``: per forecast (name -> column of annualised volatility forecasts), each symbol
    scaled to ``target`` volatility; the realised volatility's distance from the target per symbol and year, and the
    median over symbols of the after-cost statistics at every cost. Every book is run on the same rows: those where
    every forecast is a positive number and the return is known. Also returns, under ``"paths"``, each forecast's
    book equally weighted over the symbols (for the report's curves; not for the card)."""
    usable = frame["realised"].notna()
    for column in forecasts.values():
        usable &= np.isfinite(frame[column].to_numpy(float)) & (frame[column].to_numpy(float) > 0)
    trades = periods_frame(frame[usable], horizon)
    per_year = TRADING_DAYS / horizon
    results: dict[str, Any] = {"target": target, "max_leverage": max_leverage, "costs_bp": list(costs_bp),
                               "forecasts": {}}  # fmt: skip
    paths: dict[str, Returns] = {}
    for name, column in forecasts.items():
        scaled = trades.assign(weight=np.minimum(target / trades[column].to_numpy(float), max_leverage))
        per_symbol = {s: run_weights(rows, rows["weight"]) for s, rows in scaled.groupby("symbol")}
        if per_symbol:
            paths[name] = Returns(*(pd.concat([getattr(p, part) for p in per_symbol.values()], axis=1, sort=True)
                                    .mean(axis=1) for part in ("gross", "turnover", "exposure")))  # fmt: skip
        distances: list[float] = []
        by_cost: dict[str, dict[str, float]] = {}
        for path in per_symbol.values():
            years = path.gross.groupby(pd.to_datetime(path.gross.index).year)
            realised = years.std(ddof=1)[years.size() >= 4] * math.sqrt(per_year)
            distances.extend((realised - target).to_numpy(float))
        for cost in (0.0, *costs_bp):
            stats = [statistics(path.net(cost), path, horizon) for path in per_symbol.values()]
            by_cost[f"{cost:g}"] = {key: float(np.median([s[key] for s in stats])) for key in stats[0]} if stats else {}
        results["forecasts"][name] = {
            "tracking_rmse": float(np.sqrt(np.mean(np.square(distances)))) if distances else float("nan"),
            "symbol_years": len(distances),
            "by_cost": by_cost,
        }
    results["paths"] = paths
    return results
