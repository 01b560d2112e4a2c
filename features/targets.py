"""Training targets: what happens after bar t. Serving never imports this module.

Each target at t looks forward from the close of t, so it is NaN for the last ``horizon`` bars.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def forward_log_return(close: np.ndarray, horizon: int = 5) -> np.ndarray:
    """``log(close[t + horizon] / close[t])``."""
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] > horizon:
        log_c = np.log(close)
        out[:-horizon] = log_c[horizon:] - log_c[:-horizon]
    return out


def next_day_direction(close: np.ndarray) -> np.ndarray:
    """1.0 when the next close is above this close, 0.0 otherwise; NaN on the last bar."""
    out = np.full(close.shape[0], np.nan)
    out[:-1] = (close[1:] > close[:-1]).astype(np.float64)
    return out


def forward_realized_volatility(close: np.ndarray, horizon: int = 5, trading_days_per_year: int = 252) -> np.ndarray:
    """Annualised root mean square of the ``horizon`` daily log returns after t (t+1 .. t+horizon)."""
    out = np.full(close.shape[0], np.nan)
    if close.shape[0] > horizon:
        returns = np.diff(np.log(close))
        windows = sliding_window_view(returns, horizon)
        out[:-horizon] = np.sqrt(np.square(windows).mean(axis=1) * trading_days_per_year)
    return out
