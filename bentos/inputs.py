"""From request payloads to validated bars and feature rows, with errors that say what to fix."""

from __future__ import annotations

from typing import Any, cast

import numpy as np

from bentos.client_errors import Loc, item
from bentos.feature_limit import FEATURE_LIMIT, FEATURE_OUT_OF_RANGE, beyond_limit, beyond_limit_message
from bentos.regime_model import OBSERVATIONS, observation_matrix
from bentos.schemas import BadInput, BarWindow, PayloadTooLarge, Window
from features import DEFAULT_SPEC, Bars, OHLCVValidationError, validate_bars, validate_stacked

#: How many complete feature rows of a window the regime model decodes (more bars give more context).
REGIME_CONTEXT_ROWS = 250
#: The last date a window may end on: a forecast from it (at most 260 business days) must stay within year 9999.
LAST_DATE = np.datetime64("9998-12-31")
COLUMNS = ("date", "open", "high", "low", "close", "volume")


def columns_of(window: Window) -> BarWindow:
    """The window as columns: itself if it came so (the fast path), else its list of bar objects turned into columns
    (not validated again: pydantic checked each bar's fields and types)."""
    if isinstance(window, BarWindow):
        return window
    records = cast(list[dict[str, Any]], window)
    return BarWindow.model_construct(None, **{name: [bar[name] for bar in records] for name in COLUMNS})


def bars_of(window: Window, max_bars: int, where: str = "bars", loc: Loc | None = None) -> Bars:
    """Validated bars of a window (either form), or :class:`BadInput` naming the rows and rules it breaks.

    ``where`` starts the messages, ``loc`` (by default ``(where,)``) the errors' locations.
    """
    loc = (where,) if loc is None else loc
    window = columns_of(window)
    n = len(window.date)
    if n > max_bars:
        message = f"{n} bars given, at most {max_bars} are accepted in one window"
        raise PayloadTooLarge(f"{where}: {message}", [item(loc, "too_many_bars", message)])
    lengths = {name: len(getattr(window, name)) for name in COLUMNS}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in lengths.items())
        message = f"columns must have the same length, got {listed}"
        raise BadInput(f"{where}: {message}", [item(loc, "length_mismatch", message)])
    try:
        bars = validate_bars(
            window.date,
            window.open,
            window.high,
            window.low,
            window.close,
            window.volume,
            min_bars=DEFAULT_SPEC.min_bars,
        )
    except OHLCVValidationError as error:
        errors = [item((*loc, v.column) if v.column else loc, v.rule, str(v), v.row) for v in error.violations]
        raise BadInput(f"{where}: {error}", errors) from None
    if bars.dates[-1] > LAST_DATE:
        message = (
            f"row {n - 1}, date {bars.dates[-1]}: a window must end by {LAST_DATE}, so that a forecast from "
            "it stays within the calendar [date_out_of_range]"
        )
        raise BadInput(f"{where}: {message}", [item((*loc, "date"), "date_out_of_range", message, n - 1)])
    return bars


def bars_of_many(requests: list[Window], max_bars: int) -> list[Bars | Exception]:
    """:func:`bars_of` of each window, or the error it raises; equally long windows are checked together.

    One check over the stack of a length's windows when every one passes (the concurrent requests of a busy
    service), else each alone, so a bad window gets its own message and fails alone.
    """
    windows = [columns_of(window) for window in requests]
    results: list[Bars | Exception | None] = [None] * len(windows)
    by_length: dict[int, list[int]] = {}
    for i, window in enumerate(windows):
        by_length.setdefault(len(window.date), []).append(i)
    for n, members in by_length.items():
        if len(members) > 1 and n <= max_bars:
            group = [windows[i] for i in members]
            stacked = validate_stacked(
                *([getattr(w, name) for w in group] for name in ("date", "open", "high", "low", "close", "volume")),
                min_bars=DEFAULT_SPEC.min_bars,
            )
            if stacked is not None and all(bars.dates[-1] <= LAST_DATE for bars in stacked):
                for i, bars in zip(members, stacked, strict=True):
                    results[i] = bars
                continue
        for i in members:
            try:
                results[i] = bars_of(windows[i], max_bars)
            except Exception as error:  # this window's answer, not its neighbours'
                results[i] = error
    return cast(list[Bars | Exception], results)


def usable_features(bars: Bars, rows: np.ndarray) -> np.ndarray:
    """``rows``, if the models can take the last one; else :class:`BadInput` naming the features out of range."""
    last = rows[-1]
    if beyond_limit(last):
        message = f"window ending {as_of(bars)}: {beyond_limit_message(last)}"
        raise BadInput(message, [item(("bars",), FEATURE_OUT_OF_RANGE, message)], kind="unusable-window")
    return rows


def latest_features(bars: Bars) -> np.ndarray:
    """The feature row of the window's last bar (shape (1, n_features))."""
    return usable_features(bars, DEFAULT_SPEC.compute(bars, rows=1))


def regime_features(bars: Bars) -> np.ndarray:
    """The window's last complete feature rows, as the regime model's observation sequence."""
    rows = min(len(bars) - DEFAULT_SPEC.lookback, REGIME_CONTEXT_ROWS)
    features = usable_features(bars, DEFAULT_SPEC.compute(bars, rows=rows))
    if not observation_matrix(features, DEFAULT_SPEC.names)[1].any():
        needed = " and ".join(
            o.feature if o.transform == "identity" else f"{o.transform}({o.feature})" for o in OBSERVATIONS
        )
        message = (
            f"window ending {as_of(bars)}: none of its last {rows} bars gives the regime model finite {needed} "
            "(a 21-day stretch of unchanged closes has zero realized volatility): send bars whose prices move"
        )
        raise BadInput(message, [item(("bars",), "no_regime_observations", message)], kind="unusable-window")
    return features


def as_of(bars: Bars) -> str:
    return str(bars.dates[-1])


__all__ = [
    "FEATURE_LIMIT",
    "LAST_DATE",
    "REGIME_CONTEXT_ROWS",
    "BadInput",
    "PayloadTooLarge",
    "as_of",
    "bars_of",
    "bars_of_many",
    "columns_of",
    "latest_features",
    "regime_features",
    "usable_features",
]
