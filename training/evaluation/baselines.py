"""Naive baselines every model is reported against: they are what a model must beat to be worth serving."""

from __future__ import annotations

import numpy as np
from arch import arch_model

from training.dataset import Panel

EWMA_LAMBDA = 0.94


def ewma_variance(returns: np.ndarray, lam: float = EWMA_LAMBDA, warmup: int = 30) -> np.ndarray:
    """RiskMetrics variance forecast for the day after t from returns up to t (NaN before ``warmup`` returns)."""
    out = np.full(returns.shape[0], np.nan)
    valid = np.flatnonzero(np.isfinite(returns))
    if valid.size <= warmup:
        return out
    start = valid[0]
    variance = float(np.mean(returns[start : start + warmup] ** 2))
    for t in range(start + warmup, returns.shape[0]):
        variance = lam * variance + (1.0 - lam) * returns[t] ** 2
        out[t] = variance
    return out


def ewma_volatility(panel: Panel, rows: np.ndarray, trading_days: int = 252) -> np.ndarray:
    """Annualised EWMA (λ=0.94) volatility forecast for the rows: flat over the horizon, as RiskMetrics is."""
    out = np.full(rows.size, np.nan)
    for symbol, frame in panel.bars.items():
        returns = np.concatenate(([np.nan], np.diff(np.log(frame["close"].to_numpy()))))
        variance = ewma_variance(returns)
        mask = panel.symbols[rows] == symbol
        out[mask] = np.sqrt(variance[panel.positions[rows[mask]]] * trading_days)
    return out


def garch_volatility(
    panel: Panel, train: np.ndarray, test: np.ndarray, horizon: int, trading_days: int = 252
) -> np.ndarray:
    """Annualised GARCH(1,1) forecast of the next ``horizon`` days' volatility for the test rows.

    Parameters are estimated per symbol on returns up to the last training date only; test-period
    forecasts then use those fixed parameters and the returns observed up to each test day.
    """
    out = np.full(test.size, np.nan)
    last_train_date = panel.dates[train].max()
    for symbol, frame in panel.bars.items():
        mask = panel.symbols[test] == symbol
        if not mask.any():
            continue
        dates = frame["date"].to_numpy(dtype="datetime64[D]")
        returns = 100.0 * np.diff(np.log(frame["close"].to_numpy()))  # percent, as arch prefers
        return_dates = dates[1:]
        last_obs = int(np.searchsorted(return_dates, last_train_date, side="right"))
        model = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, dist="normal", rescale=False)
        fitted = model.fit(last_obs=last_obs, disp="off", show_warning=False)
        positions = panel.positions[test[mask]] - 1  # bar t -> return index of the return ending at t
        first = int(positions.min())
        forecast = fitted.forecast(horizon=horizon, start=first, reindex=False, align="origin")
        variance = forecast.variance.to_numpy()  # row i: forecasts made at return index first + i
        mean_variance = variance[positions - first].mean(axis=1)
        out[mask] = np.sqrt(mean_variance * trading_days) / 100.0
    return out


def majority_probability(direction_train: np.ndarray) -> float:
    """The training up-rate: the majority-class baseline's P(up)."""
    return float(np.nanmean(direction_train))
