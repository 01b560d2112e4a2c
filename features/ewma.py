"""RiskMetrics' EWMA variance of daily log returns: the volatility baseline of the evaluation and the scale of
``price_prophet``'s served intervals (``bentos/prophet_intervals.py``), one recursion for both."""

from __future__ import annotations

import numpy as np

EWMA_LAMBDA = 0.94
#: Returns the variance recursion starts from (their mean square): none is forecast before.
WARMUP = 30


def ewma_variance(returns: np.ndarray, lam: float = EWMA_LAMBDA, warmup: int = WARMUP) -> np.ndarray:
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


def close_variance(close: np.ndarray) -> np.ndarray:
    """The EWMA daily variance at every bar of a series of closes (NaN before the warm-up)."""
    log_close = np.log(np.asarray(close, dtype=float))
    return ewma_variance(np.concatenate(([np.nan], np.diff(log_close))))
