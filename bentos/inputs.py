"""From request payloads to validated bars and feature rows, with errors that say what to fix."""

from __future__ import annotations

import numpy as np

from bentos.schemas import BadInput, BarWindow, PayloadTooLarge
from features import DEFAULT_SPEC, Bars, OHLCVValidationError, validate_bars

#: How many complete feature rows of a window the regime model decodes (more bars give more context).
REGIME_CONTEXT_ROWS = 250


def bars_of(window: BarWindow, max_bars: int, where: str = "bars") -> Bars:
    """Validated bars of a window, or :class:`BadInput` naming the rows and rules it breaks."""
    n = len(window.date)
    if n > max_bars:
        raise PayloadTooLarge(f"{where}: {n} bars given, at most {max_bars} are accepted in one window")
    lengths = {name: len(getattr(window, name)) for name in ("date", "open", "high", "low", "close", "volume")}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise BadInput(f"{where}: columns must have the same length, got {listed}")
    try:
        return validate_bars(
            window.date,
            window.open,
            window.high,
            window.low,
            window.close,
            window.volume,
            min_bars=DEFAULT_SPEC.min_bars,
        )
    except OHLCVValidationError as error:
        raise BadInput(f"{where}: {error}") from None


def latest_features(bars: Bars) -> np.ndarray:
    """The feature row of the window's last bar (shape (1, n_features))."""
    return DEFAULT_SPEC.compute(bars, rows=1)


def regime_features(bars: Bars) -> np.ndarray:
    """The window's last complete feature rows, as the regime model's observation sequence."""
    rows = min(len(bars) - DEFAULT_SPEC.lookback, REGIME_CONTEXT_ROWS)
    return DEFAULT_SPEC.compute(bars, rows=rows)


def as_of(bars: Bars) -> str:
    return str(bars.dates[-1])


__all__ = [
    "REGIME_CONTEXT_ROWS",
    "BadInput",
    "PayloadTooLarge",
    "as_of",
    "bars_of",
    "latest_features",
    "regime_features",
]
