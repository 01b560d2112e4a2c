"""Trailing-window primitives on numpy arrays.

Every function returns, for each position t, a value computed from the ``window`` values ending at t, and
NaN where fewer than ``window`` values exist. By default the result is as long as the input; with ``rows=k``
only the last k positions are computed (serving needs the last bar only). Each window is reduced on its own
(no running sums carried across rows), so the value at t is bit-for-bit the same whichever bar the input
starts at and however many rows are asked for: a serving window and the full training history give
identical features. Time runs along the last axis: a 2-D input is a stack of equally long series (several
requests' windows) computed in one pass, each row as it would be on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np

Reducer = Callable[[np.ndarray], np.ndarray]


def trailing_windows(x: np.ndarray, window: int) -> np.ndarray:
    """A read-only (..., n - window + 1, window) view whose entry [..., i, :] holds ``x[..., i : i + window]``.

    Built directly on the buffer: ``sliding_window_view`` costs ~30 us a call, which matters for the
    ~40 calls of one serving window.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.shape[-1] == window:  # one window (serving's last row): the series itself, as a view of one window
        return x[..., None, :]
    shape = (*x.shape[:-1], x.shape[-1] - window + 1, window)
    view = np.ndarray(shape, np.float64, x, 0, (*x.strides[:-1], 8, 8))
    view.flags.writeable = False
    return view


def output_rows(n: int, rows: int | None) -> int:
    """How many trailing positions a primitive computes for an input of length ``n``."""
    return n if rows is None else min(rows, n)


def _trailing(x: np.ndarray, window: int, reduce: Reducer, rows: int | None) -> np.ndarray:
    n = x.shape[-1]
    k = output_rows(n, rows)
    # out[..., i] is position t = n - k + i, which has a full window once t >= window - 1
    valid_from = max(window - 1 - (n - k), 0)
    if valid_from == 0:  # every position asked for has a full window (always so for serving's last row)
        return reduce(trailing_windows(x[..., n - k - window + 1 :], window))
    out = np.empty((*x.shape[:-1], k))
    out[..., :valid_from] = np.nan
    if valid_from < k:
        out[..., valid_from:] = reduce(trailing_windows(x[..., n - k + valid_from - window + 1 :], window))
    return out


def lagged_difference(x: np.ndarray, lag: int, rows: int | None = None) -> np.ndarray:
    """``x[t] - x[t - lag]``."""
    n = x.shape[-1]
    k = output_rows(n, rows)
    out = np.empty((*x.shape[:-1], k))
    valid_from = max(lag - (n - k), 0)
    out[..., :valid_from] = np.nan
    if valid_from < k:
        out[..., valid_from:] = x[..., n - k + valid_from :] - x[..., n - k + valid_from - lag : n - lag]
    return out


def lagged_differences(x: np.ndarray, lags: tuple[int, ...], rows: int | None = None) -> np.ndarray:
    """``x[t] - x[t - lag]`` for every lag at once, stacked along a new second-to-last axis (one row a lag)."""
    n = x.shape[-1]
    k = output_rows(n, rows)
    earlier = np.arange(n - k, n) - np.array(lags)[:, None]  # (lags, k): the position each difference reaches back to
    out = x[..., None, n - k :] - x[..., np.maximum(earlier, 0)]
    if n - k < max(lags):  # some positions have no bar that far back
        out[..., earlier < 0] = np.nan
    return out


def rolling_mean(x: np.ndarray, window: int, rows: int | None = None) -> np.ndarray:
    return _trailing(x, window, lambda w: np.add.reduce(w, axis=-1) / window, rows)


def rolling_std(x: np.ndarray, window: int, rows: int | None = None) -> np.ndarray:
    """Sample standard deviation (ddof=1) over the trailing window."""

    def std(w: np.ndarray) -> np.ndarray:
        centred = w - (np.add.reduce(w, axis=-1) / window)[..., None]
        return np.sqrt(np.add.reduce(centred * centred, axis=-1) / (window - 1))

    return _trailing(x, window, std, rows)


def rolling_max(x: np.ndarray, window: int, rows: int | None = None) -> np.ndarray:
    return _trailing(x, window, lambda w: np.maximum.reduce(w, axis=-1), rows)


def rolling_min(x: np.ndarray, window: int, rows: int | None = None) -> np.ndarray:
    return _trailing(x, window, lambda w: np.minimum.reduce(w, axis=-1), rows)


def rolling_skew(x: np.ndarray, window: int, rows: int | None = None) -> np.ndarray:
    """Sample skewness (biased, like ``scipy.stats.skew``) over the trailing window; 0 for a flat window."""

    def skew(w: np.ndarray) -> np.ndarray:
        centred = w - (np.add.reduce(w, axis=-1) / window)[..., None]
        squared = centred * centred
        m2 = np.add.reduce(squared, axis=-1) / window
        m3 = np.add.reduce(squared * centred, axis=-1) / window
        with np.errstate(invalid="ignore", divide="ignore"):
            result = m3 / m2**1.5
        return np.where(m2 > 0, result, np.where(np.isnan(m2), np.nan, 0.0))

    return _trailing(x, window, skew, rows)


@cache
def ema_weights(span: int) -> np.ndarray:
    """Weights of an exponential average with ``span`` truncated at 3 * span bars, oldest first, summing to 1.

    Truncation keeps the average a function of a fixed number of bars (the tail it drops weighs < 0.3 %).
    """
    alpha = 2.0 / (span + 1.0)
    weights = (1.0 - alpha) ** np.arange(3 * span)[::-1]
    weights /= weights.sum()
    weights.flags.writeable = False
    return weights


def exponential_average(x: np.ndarray, span: int, rows: int | None = None) -> np.ndarray:
    """Truncated exponential moving average of span ``span`` (see :func:`ema_weights`)."""
    weights = ema_weights(span)
    return _trailing(x, weights.shape[0], lambda w: np.add.reduce(w * weights, axis=-1), rows)
