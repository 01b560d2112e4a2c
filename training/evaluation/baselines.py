"""Naive baselines every model is reported against: they are what a model must beat to be worth serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
from arch import arch_model

from features.ewma import ewma_variance
from training.dataset import Panel, rows_by_symbol


def ewma_volatility(panel: Panel, rows: np.ndarray, trading_days: int = 252) -> np.ndarray:
    """Annualised EWMA (λ=0.94) volatility forecast for the rows: flat over the horizon, as RiskMetrics is."""
    out = np.full(rows.size, np.nan)
    for symbol, mask in rows_by_symbol(panel.symbols[rows]).items():
        returns = np.concatenate(([np.nan], np.diff(np.log(panel.bars[symbol]["close"].to_numpy()))))
        variance = ewma_variance(returns)
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
    for symbol, mask in rows_by_symbol(panel.symbols[test]).items():
        frame = panel.bars[symbol]
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


#: HAR-RV's windows (Corsi 2009): the daily, weekly and monthly realised volatility.
HAR_WINDOWS = (1, 5, 22)
#: Symbol rows a HAR regression needs to be fitted (fewer: no forecast for that symbol's test rows).
HAR_MIN_ROWS = 60


def har_regressors(close: np.ndarray, trading_days: int = 252) -> np.ndarray:
    """Per bar t: the annualised root mean square of the daily log returns over the last 1, 5 and 22 days (to t)."""
    squared = pd.Series(np.concatenate(([np.nan], np.diff(np.log(close)))) ** 2)
    return np.column_stack(
        [np.sqrt(squared.rolling(w, min_periods=w).mean().to_numpy() * trading_days) for w in HAR_WINDOWS]
    )


def har_volatility(panel: Panel, train: np.ndarray, test: np.ndarray, target: np.ndarray) -> np.ndarray:
    """HAR-RV forecast of the target (annualised forward realised volatility) for the test rows, per symbol.

    Corsi's heterogeneous autoregression: ordinary least squares of the target on a constant and the daily, weekly
    and monthly realised volatilities at t, fitted on the symbol's training rows (the split's, overlapping targets
    already purged) and applied to its test rows. In volatility units, as the target is, which keeps the forecast
    positive in practice (clipped at 1e-4 otherwise); a symbol with fewer than ``HAR_MIN_ROWS`` training rows gets
    no forecast.
    """
    out = np.full(test.size, np.nan)
    training = rows_by_symbol(panel.symbols[train])
    for symbol, mask in rows_by_symbol(panel.symbols[test]).items():
        regressors = har_regressors(panel.bars[symbol]["close"].to_numpy(float))
        rows = train[training.get(symbol, np.empty(0, dtype=int))]
        x, y = regressors[panel.positions[rows]], target[rows]
        known = np.isfinite(x).all(axis=1) & np.isfinite(y)
        if known.sum() < HAR_MIN_ROWS:
            continue
        coefficients, *_ = np.linalg.lstsq(np.column_stack([np.ones(known.sum()), x[known]]), y[known], rcond=None)
        ahead = regressors[panel.positions[test[mask]]]
        out[mask] = np.maximum(np.column_stack([np.ones(len(ahead)), ahead]) @ coefficients, 1e-4)
    return out


def majority_probability(direction_train: np.ndarray) -> float:
    """The training up-rate: the majority-class baseline's P(up)."""
    return float(np.nanmean(direction_train))
