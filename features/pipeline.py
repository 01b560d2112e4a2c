"""The point-in-time feature pipeline: scale-free technical features of daily bars, vectorised in numpy.

One implementation serves training (a whole history) and serving (one window): the feature row at t
depends only on the ``lookback + 1`` bars ending at t, so it is the same whether those bars are the tail of
a 300-bar request or part of twenty years of history.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.windows import (
    ema_weights,
    exponential_average,
    lagged_difference,
    lagged_differences,
    output_rows,
    rolling_max,
    rolling_mean,
    rolling_min,
    rolling_skew,
    rolling_std,
)

_LOG2 = float(np.log(2.0))


@dataclass(frozen=True)
class FeatureParams:
    """Windows and lags of the features; changing any of them changes the FeatureSpec hash."""

    return_lags: tuple[int, ...] = (1, 2, 5, 10, 21, 63)
    volatility_windows: tuple[int, ...] = (5, 21, 63)
    range_volatility_window: int = 21
    rsi_window: int = 14
    macd_spans: tuple[int, int, int] = (12, 26, 9)
    moving_averages: tuple[int, ...] = (10, 50, 200)
    bollinger_window: int = 20
    atr_window: int = 14
    extremes_window: int = 252
    skew_window: int = 63
    volume_window: int = 21
    volume_ratio_windows: tuple[int, int] = (5, 63)
    trading_days_per_year: int = 252


@dataclass(frozen=True)
class Bars:
    """Daily bars of one symbol as numpy arrays (dates as datetime64[D], values as float64).

    Time runs along the last axis. Serving may stack several equally long windows as 2-D arrays (one row a
    window) and compute their features in one pass: :func:`stack_windows`.
    """

    dates: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    _derived: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Bars:
        """Bars from a frame that passed :func:`features.ohlcv.validate_ohlcv`."""
        return cls(
            dates=frame["date"].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]"),
            open=frame["open"].to_numpy(dtype=np.float64),
            high=frame["high"].to_numpy(dtype=np.float64),
            low=frame["low"].to_numpy(dtype=np.float64),
            close=frame["close"].to_numpy(dtype=np.float64),
            volume=frame["volume"].to_numpy(dtype=np.float64),
        )

    def __len__(self) -> int:
        """The number of bars (of each window, when stacked)."""
        return int(self.close.shape[-1])

    def tail(self, n: int) -> Bars:
        """The last ``n`` bars."""
        start = max(len(self) - n, 0)
        return Bars(
            self.dates[..., start:],
            self.open[..., start:],
            self.high[..., start:],
            self.low[..., start:],
            self.close[..., start:],
            self.volume[..., start:],
        )

    @property
    def log_close(self) -> np.ndarray:
        if "log_close" not in self._derived:
            self._derived["log_close"] = np.log(self.close)
        return self._derived["log_close"]

    @property
    def log_returns(self) -> np.ndarray:
        """Daily log returns of the close; NaN on the first bar."""
        if "log_returns" not in self._derived:
            self._derived["log_returns"] = lagged_difference(self.log_close, 1)
        return self._derived["log_returns"]


def feature_layout(params: FeatureParams) -> list[tuple[str, int]]:
    """The ordered feature names with the number of earlier bars each needs."""
    p = params
    fast, slow, signal = p.macd_spans
    layout: list[tuple[str, int]] = [(f"ret_{lag}", lag) for lag in p.return_lags]
    layout += [(f"rv_{w}", w) for w in p.volatility_windows]
    layout += [
        (f"vol_ratio_{p.volatility_windows[0]}_{p.volatility_windows[-1]}", p.volatility_windows[-1]),
        (f"parkinson_{p.range_volatility_window}", p.range_volatility_window - 1),
        (f"garman_klass_{p.range_volatility_window}", p.range_volatility_window - 1),
        (f"atr_{p.atr_window}", p.atr_window),
        (f"skew_{p.skew_window}", p.skew_window),
        (f"rsi_{p.rsi_window}", p.rsi_window),
        ("macd", 3 * slow - 1),
        ("macd_signal", 3 * slow - 1 + 3 * signal - 1),
        ("macd_hist", 3 * slow - 1 + 3 * signal - 1),
    ]
    layout += [(f"close_sma_{w}", w - 1) for w in p.moving_averages]
    layout += [
        (f"sma_{p.moving_averages[0]}_{p.moving_averages[1]}", p.moving_averages[1] - 1),
        (f"bollinger_z_{p.bollinger_window}", p.bollinger_window - 1),
        (f"dist_high_{p.extremes_window}", p.extremes_window - 1),
        (f"dist_low_{p.extremes_window}", p.extremes_window - 1),
        ("gap", 1),
        ("intraday", 0),
        ("range", 0),
        ("close_location", 0),
        (f"volume_z_{p.volume_window}", p.volume_window - 1),
        (
            f"volume_ratio_{p.volume_ratio_windows[0]}_{p.volume_ratio_windows[1]}",
            p.volume_ratio_windows[1] - 1,
        ),
        ("day_of_week", 0),
        ("month_sin", 0),
        ("month_cos", 0),
    ]
    assert fast < slow, "the fast MACD span must be shorter than the slow one"
    return layout


def compute_feature_columns(bars: Bars, params: FeatureParams, rows: int | None = None) -> dict[str, np.ndarray]:
    """Every feature of ``params`` in layout order, for every bar or only the last ``rows`` bars.

    NaN where the lookback is not met. Intermediate series are computed over the whole input; each
    feature only at the positions asked for, with the same window arithmetic either way. Series that share a
    window length are stacked and reduced in one call (serving computes one row, where the number of numpy calls,
    not their size, is the cost).
    """
    with np.errstate(divide="ignore", invalid="ignore"):  # flat windows divide 0 by 0; each feature says what then
        return _feature_columns(bars, params, output_rows(len(bars), rows))


def _feature_columns(bars: Bars, p: FeatureParams, k: int) -> dict[str, np.ndarray]:
    annual = np.sqrt(p.trading_days_per_year)
    c, o, h, low, v = bars.close, bars.open, bars.high, bars.low, bars.volume
    log_c, r = bars.log_close, bars.log_returns
    log_hl = np.log(h / low)
    log_co = np.log(c / o)
    log_v = np.log1p(v)
    squared = r * r
    cols: dict[str, np.ndarray] = {}

    def last(x: np.ndarray) -> np.ndarray:
        return x[..., x.shape[-1] - k :]

    lagged = lagged_differences(log_c, p.return_lags, k)
    for i, lag in enumerate(p.return_lags):
        cols[f"ret_{lag}"] = lagged[..., i, :]

    # the trailing means, one call per window length: {window: {name: series}}
    w, vw, (vs, vl) = p.range_volatility_window, p.volume_window, p.volume_ratio_windows
    prev_close = _previous(c)
    by_window: dict[int, dict[str, np.ndarray]] = {}
    for window, name, series in (
        *((rv, f"rv_{rv}", squared) for rv in p.volatility_windows),
        (w, "parkinson", log_hl * log_hl),
        (w, "garman_klass", 0.5 * log_hl**2 - (2.0 * _LOG2 - 1.0) * log_co**2),
        (p.atr_window, "true_range", np.maximum(h, prev_close) - np.minimum(low, prev_close)),
        (p.rsi_window, "gains", np.maximum(r, 0.0)),
        (p.rsi_window, "losses", np.maximum(-r, 0.0)),
        (vw, "log_volume", log_v),
        (vs, "volume_short", log_v),
        (vl, "volume_long", log_v),
    ):
        by_window.setdefault(window, {})[name] = series
    means: dict[str, np.ndarray] = {}
    for window, named in by_window.items():
        reduced = rolling_mean(np.array(tuple(named.values())), window, k)  # np.array: np.stack costs 3x more
        means.update(zip(named, reduced, strict=True))

    realized = {rv: np.sqrt(means[f"rv_{rv}"]) * annual for rv in p.volatility_windows}
    for rv, value in realized.items():
        cols[f"rv_{rv}"] = value
    short, long = p.volatility_windows[0], p.volatility_windows[-1]
    ratio = realized[short] / realized[long]
    cols[f"vol_ratio_{short}_{long}"] = np.where(realized[long] > 0, ratio, np.where(np.isnan(ratio), np.nan, 1.0))

    cols[f"parkinson_{w}"] = np.sqrt(means["parkinson"] / (4.0 * _LOG2)) * annual
    cols[f"garman_klass_{w}"] = np.sqrt(np.maximum(means["garman_klass"], 0.0)) * annual
    close = last(c)
    cols[f"atr_{p.atr_window}"] = means["true_range"] / close
    cols[f"skew_{p.skew_window}"] = rolling_skew(r, p.skew_window, k)
    cols[f"rsi_{p.rsi_window}"] = _relative_strength(means["gains"], means["losses"])

    fast, slow, signal = p.macd_spans
    # the signal line averages the MACD line, so the MACD line is needed over the signal's window too
    macd_rows = output_rows(len(bars), k + ema_weights(signal).shape[0] - 1)
    macd_line = (exponential_average(c, fast, macd_rows) - exponential_average(c, slow, macd_rows)) / c[
        ..., -macd_rows:
    ]
    macd_signal = exponential_average(macd_line, signal, k)
    macd = last(macd_line)
    cols["macd"] = macd
    cols["macd_signal"] = macd_signal
    cols["macd_hist"] = macd - macd_signal

    sma = {window: rolling_mean(c, window, k) for window in (*p.moving_averages, p.bollinger_window)}
    for window in p.moving_averages:
        cols[f"close_sma_{window}"] = np.log(close / sma[window])
    first, second = p.moving_averages[0], p.moving_averages[1]
    cols[f"sma_{first}_{second}"] = np.log(sma[first] / sma[second])
    bw = p.bollinger_window
    band = rolling_std(c, bw, k)
    z = (close - sma[bw]) / band
    cols[f"bollinger_z_{bw}"] = np.where(band > 0, z, np.where(np.isnan(band), np.nan, 0.0))

    ew = p.extremes_window
    cols[f"dist_high_{ew}"] = last(log_c) - np.log(rolling_max(h, ew, k))
    cols[f"dist_low_{ew}"] = last(log_c) - np.log(rolling_min(low, ew, k))

    cols["gap"] = np.log(last(o)) - last(_previous(log_c))
    cols["intraday"] = last(log_co)
    cols["range"] = last(log_hl)
    spread = last(h) - last(low)
    cols["close_location"] = np.where(spread > 0, (close - last(low)) / spread, 0.5)

    v_std = rolling_std(log_v, vw, k)
    vz = (last(log_v) - means["log_volume"]) / v_std
    cols[f"volume_z_{vw}"] = np.where(v_std > 0, vz, np.where(np.isnan(v_std), np.nan, 0.0))
    cols[f"volume_ratio_{vs}_{vl}"] = means["volume_short"] - means["volume_long"]

    dates = last(bars.dates)
    days = dates.astype("datetime64[D]").astype(np.int64)
    cols["day_of_week"] = ((days + 3) % 7) / 4.0  # Monday 0 .. Friday 1
    month_angle = 2.0 * np.pi * (dates.astype("datetime64[M]").astype(np.int64) % 12) / 12.0
    cols["month_sin"] = np.sin(month_angle)
    cols["month_cos"] = np.cos(month_angle)
    return cols


def _previous(x: np.ndarray) -> np.ndarray:
    """``x`` one bar later: the value of the bar before, NaN on the first bar."""
    return np.concatenate((np.full((*x.shape[:-1], 1), np.nan), x[..., :-1]), axis=-1)


def stack_windows(windows: list[Bars]) -> Bars:
    """Equally long windows as one stacked :class:`Bars` (one row a window) for a single feature pass."""
    return Bars(
        np.array([w.dates for w in windows]),
        np.array([w.open for w in windows]),
        np.array([w.high for w in windows]),
        np.array([w.low for w in windows]),
        np.array([w.close for w in windows]),
        np.array([w.volume for w in windows]),
    )


def _relative_strength(gains: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """RSI on [0, 1] from the average gain and loss over its window (0.5 when flat)."""
    total = gains + losses
    rsi = gains / total
    return np.where(total > 0, rsi, np.where(np.isnan(total), np.nan, 0.5))
