"""The OHLCV contract: one definition of a valid frame of daily bars, used by every entry point.

A valid frame has a ``date`` column (unique and strictly increasing, per symbol in a panel) and
``open``, ``high``, ``low``, ``close`` (finite, > 0) and ``volume`` (finite, >= 0), with
``high >= max(open, close)`` and ``low <= min(open, close)``. Validation reports every violation at once,
each with its row, date, column and rule, so a user can fix a file in one pass.

What a date is (text ``YYYY-MM-DD``, or a date or timestamp value reduced to its day) is :mod:`features.dates`;
the rules' names and the error are :mod:`features.violations`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.dates import date_violations, parse_dates
from features.pipeline import Bars
from features.violations import OHLCVValidationError, Rule, Violation

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
VALUE_COLUMNS: tuple[str, ...] = (*PRICE_COLUMNS, "volume")
OHLCV_COLUMNS: tuple[str, ...] = ("date", *VALUE_COLUMNS)
SYMBOL_COLUMN = "symbol"

__all__ = [  # the contract's names, wherever they are defined (dates and violations have their own modules)
    "OHLCV_COLUMNS",
    "PRICE_COLUMNS",
    "SYMBOL_COLUMN",
    "VALUE_COLUMNS",
    "OHLCVValidationError",
    "Rule",
    "Violation",
    "check_bar_values",
    "validate_bars",
    "validate_ohlcv",
    "validate_stacked",
]


def _date_text(dates: np.ndarray, row: int) -> str | None:
    value = dates[row]
    if np.isnat(value):
        return None
    return str(value.astype("datetime64[D]"))


def _coerce_numeric(column: pd.Series, name: str, violations: list[Violation]) -> np.ndarray:
    """Return the column as float64, recording a violation for every entry that is not a number."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiu":  # the common case, kept cheap for serving windows
        return column.to_numpy(dtype=np.float64, copy=True)
    if pd.api.types.is_bool_dtype(dtype):
        violations.append(Violation(Rule.NOT_NUMERIC, f"{name} is boolean, expected numbers", column=name))
        return np.full(len(column), np.nan)
    if pd.api.types.is_numeric_dtype(dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(column, errors="coerce")
    bad = coerced.isna().to_numpy() & column.notna().to_numpy()
    for row in np.flatnonzero(bad):
        violations.append(
            Violation(
                Rule.NOT_NUMERIC,
                f"{name}={column.iloc[row]!r} is not a number",
                row=int(row),
                column=name,
                value=str(column.iloc[row]),
            )
        )
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


#: The days a frame's datetime64[ns] column can hold.
FRAME_FIRST_DAY, FRAME_LAST_DAY = np.datetime64("1677-09-22"), np.datetime64("2262-04-11")


def _coerce_dates(column: pd.Series, violations: list[Violation]) -> np.ndarray:
    """The dates by the one rule of :mod:`features.dates`, as datetime64[ns] at midnight; NaT where not a date."""
    days, bad = parse_dates(column)
    violations.extend(date_violations(column, bad))
    outside = ~bad & ((days < FRAME_FIRST_DAY) | (days > FRAME_LAST_DAY))
    for row in np.flatnonzero(outside).tolist():
        violations.append(
            Violation(
                Rule.DATE_OUT_OF_RANGE,
                f"date {days[row]} is outside the days a frame holds ({FRAME_FIRST_DAY}..{FRAME_LAST_DAY})",
                row=row,
                column="date",
                value=str(days[row]),
            )
        )
    days[outside] = np.datetime64("NaT")
    return days.astype("datetime64[ns]")


#: The order rules of valid bars as (row, row) pairs of the stacked (open, high, low, close) values: row a >= row b
_AT_LEAST = (np.array([1, 1, 0, 3]), np.array([0, 3, 2, 2]))  # high >= open, close; open, close >= low


def _all_valid(dates: np.ndarray, values: dict[str, np.ndarray], symbols: np.ndarray | None) -> bool:
    """A few whole-array checks that pass for valid bars: the common case never builds a violation.

    Few numpy calls, each over all the columns at once: serving runs this on every request. Without ``symbols``
    the arrays may be stacked windows (one row a window, time along the last axis).
    """
    o, h, low, c, v = (values[n] for n in VALUE_COLUMNS)
    prices = np.array((o, h, low, c))
    with np.errstate(invalid="ignore"):
        if not (np.isfinite(prices).all() and np.isfinite(v).all()):
            return False
        high, low_side = _AT_LEAST
        if not ((prices[high] >= prices[low_side]).all() and (low > 0).all() and (v >= 0).all()):
            return False
    if dates.shape[-1] < 2:
        return not np.isnat(dates).any()
    days = dates.astype("datetime64[D]", copy=False)
    increasing = days[..., 1:] > days[..., :-1]  # NaT compares False, so it fails here too
    if symbols is None:
        return bool(increasing.all())
    # a panel: when each symbol's rows are one block, the date order holds if it holds between neighbours
    same = symbols[1:] == symbols[:-1]
    firsts = symbols[np.flatnonzero(np.concatenate(([True], ~same)))]  # each block's symbol
    ordered = bool((increasing | ~same).all()) and not np.isnat(days).any()
    return ordered and len(set(firsts.tolist())) == len(firsts)


def check_bar_values(
    dates: np.ndarray,
    values: dict[str, np.ndarray],
    symbols: np.ndarray | None = None,
    row_offset: int = 0,
) -> list[Violation]:
    """Check the value rules and the date order on numpy arrays; return every violation found.

    ``dates`` is datetime64 (NaT where a date could not be read), ``values`` maps each of
    ``VALUE_COLUMNS`` to a float64 array. With ``symbols``, date order is checked within each symbol.
    """
    if _all_valid(dates, values, symbols):
        return []
    violations: list[Violation] = []
    sym = None if symbols is None else symbols

    def add(rule: str, rows: np.ndarray, column: str | None, describe: Any) -> None:
        for row in rows:
            row = int(row)
            violations.append(
                Violation(
                    rule,
                    describe(row),
                    row=row + row_offset,
                    column=column,
                    date=_date_text(dates, row),
                    symbol=None if sym is None else str(sym[row]),
                    value=None if column is None else float(values[column][row]),
                )
            )

    finite = {}
    for name in VALUE_COLUMNS:
        column = values[name]
        is_finite = np.isfinite(column)
        finite[name] = is_finite
        if not is_finite.all():
            add(
                Rule.NOT_FINITE,
                np.flatnonzero(~is_finite),
                name,
                lambda r, n=name: f"{n}={values[n][r]} is not finite",
            )
        bad = is_finite & (column <= 0) if name in PRICE_COLUMNS else is_finite & (column < 0)
        if bad.any():
            rule = Rule.PRICE_NOT_POSITIVE if name in PRICE_COLUMNS else Rule.VOLUME_NEGATIVE
            rel = "must be > 0" if name in PRICE_COLUMNS else "must be >= 0"
            add(rule, np.flatnonzero(bad), name, lambda r, n=name, rel=rel: f"{n}={values[n][r]} {rel}")

    o, h, low, c = (values[n] for n in PRICE_COLUMNS)
    all_finite = finite["open"] & finite["high"] & finite["low"] & finite["close"]
    with np.errstate(invalid="ignore"):
        top = np.maximum(o, c)
        bottom = np.minimum(o, c)
        high_bad = all_finite & (h < top)
        low_bad = all_finite & (low > bottom)
    if high_bad.any():
        add(
            Rule.HIGH_BELOW_OPEN_CLOSE,
            np.flatnonzero(high_bad),
            "high",
            lambda r: f"high={h[r]} is below max(open, close)={top[r]}",
        )
    if low_bad.any():
        add(
            Rule.LOW_ABOVE_OPEN_CLOSE,
            np.flatnonzero(low_bad),
            "low",
            lambda r: f"low={low[r]} is above min(open, close)={bottom[r]}",
        )
    violations.extend(_check_date_order(dates, symbols, row_offset))
    return violations


def _check_date_order(dates: np.ndarray, symbols: np.ndarray | None, row_offset: int) -> list[Violation]:
    n = len(dates)
    if n < 2:
        return []
    if symbols is None:
        order = np.arange(n)
        same_group = np.ones(n - 1, dtype=bool)
    else:
        # group by symbol keeping file order within each: sort integer codes, not Python strings
        codes = pd.factorize(symbols)[0]
        order = np.argsort(codes, kind="stable")
        sorted_symbols = symbols[order]
        same_group = sorted_symbols[1:] == sorted_symbols[:-1]
    d = dates[order].astype("datetime64[D]").astype(np.int64)
    valid = ~np.isnat(dates[order])
    pair_valid = same_group & valid[1:] & valid[:-1]
    step = d[1:] - d[:-1]
    out: list[Violation] = []
    for k in np.flatnonzero(pair_valid & (step <= 0)):
        row, prev = int(order[k + 1]), int(order[k])
        duplicate = step[k] == 0
        rule = Rule.DATE_DUPLICATE if duplicate else Rule.DATE_UNSORTED
        text = _date_text(dates, row)
        message = (
            f"date {text} repeats the date of row {prev + row_offset}"
            if duplicate
            else f"date {text} comes after {_date_text(dates, prev)} (row {prev + row_offset}); dates must increase"
        )
        out.append(
            Violation(
                rule,
                message,
                row=row + row_offset,
                column="date",
                date=text,
                symbol=None if symbols is None else str(symbols[row]),
            )
        )
    return out


def _raise_if_any(violations: list[Violation]) -> None:
    """Raise the violations in row order, dropping "not finite" where "not a number" already said it."""
    if not violations:
        return
    unreadable = {(v.row, v.column) for v in violations if v.rule == Rule.NOT_NUMERIC}
    kept = [v for v in violations if not (v.rule == Rule.NOT_FINITE and (v.row, v.column) in unreadable)]
    kept.sort(key=lambda v: -1 if v.row is None else v.row)
    raise OHLCVValidationError(kept)


def validate_stacked(
    dates: Any,
    open: Any,
    high: Any,
    low: Any,
    close: Any,
    volume: Any,
    *,
    min_bars: int = 1,
) -> list[Bars] | None:
    """Equally long windows (each argument a sequence of them, one per window) as Bars, checked in one pass.

    The Bars :func:`validate_bars` gives each window, or None unless every window is valid: then validate each
    alone for the rows and rules it breaks. Serving checks the windows of concurrent requests this way.
    """
    try:
        day_dates, bad_dates = parse_dates(dates)
        values = np.array((open, high, low, close, volume), dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if bad_dates.any():
        return None
    if day_dates.ndim != 2 or values.shape != (len(VALUE_COLUMNS), *day_dates.shape):
        return None
    if day_dates.shape[-1] < min_bars or not _all_valid(day_dates, dict(zip(VALUE_COLUMNS, values, strict=True)), None):
        return None
    return [Bars(day_dates[i], *values[:, i]) for i in range(day_dates.shape[0])]


def validate_ohlcv(frame: pd.DataFrame, *, min_bars: int = 1, panel: bool = False) -> pd.DataFrame:
    """Validate a frame of daily bars and return it normalised, or raise :class:`OHLCVValidationError`.

    The result has the columns ``OHLCV_COLUMNS`` (preceded by ``symbol`` for a panel), dates as
    datetime64[ns] at midnight and values as float64, in the input's row order and with a fresh
    RangeIndex. ``panel=True`` expects a long frame with a ``symbol`` column and checks the date
    order within each symbol; ``min_bars`` then applies to every symbol.
    """
    violations: list[Violation] = []
    required = ((SYMBOL_COLUMN,) if panel else ()) + OHLCV_COLUMNS
    missing = [name for name in required if name not in frame.columns]
    for name in missing:
        violations.append(
            Violation(
                Rule.MISSING_COLUMN,
                f"column {name!r} is missing (expected columns: {', '.join(required)})",
                column=name,
            )
        )
    if missing:
        raise OHLCVValidationError(violations)

    symbol_column = frame[SYMBOL_COLUMN].astype(str) if panel else None
    symbols = None if symbol_column is None else symbol_column.to_numpy()
    _check_length(frame, symbols, min_bars, violations)
    dates = _coerce_dates(frame["date"], violations)
    values = {name: _coerce_numeric(frame[name], name, violations) for name in VALUE_COLUMNS}
    violations.extend(check_bar_values(dates, values, symbols))
    _raise_if_any(violations)

    columns: dict[str, Any] = {}
    if symbol_column is not None:
        columns[SYMBOL_COLUMN] = symbol_column.array  # as read (arrow strings stay arrow: no conversion back)
    columns["date"] = dates
    columns.update(values)
    return pd.DataFrame(columns, copy=False)  # fresh copies, or the input's immutable symbol strings


def _check_length(frame: pd.DataFrame, symbols: np.ndarray | None, min_bars: int, violations: list[Violation]) -> None:
    if symbols is None:
        if len(frame) < min_bars:
            violations.append(
                Violation(
                    Rule.TOO_FEW_BARS,
                    f"{len(frame)} bars given, at least {min_bars} are needed",
                    value=len(frame),
                )
            )
        return
    if len(frame) == 0:
        violations.append(Violation(Rule.TOO_FEW_BARS, "no bars given", value=0))
        return
    if min_bars <= 1:  # every symbol present has a bar
        return
    counts = pd.Series(symbols).value_counts(sort=False)
    for name, count in counts.sort_index().items():
        if count < min_bars:
            violations.append(
                Violation(
                    Rule.TOO_FEW_BARS,
                    f"{count} bars given, at least {min_bars} are needed",
                    symbol=str(name),
                    value=int(count),
                )
            )


def validate_bars(
    dates: Any,
    open: Any,
    high: Any,
    low: Any,
    close: Any,
    volume: Any,
    *,
    min_bars: int = 1,
) -> Bars:
    """Validate one symbol's bars given as arrays or sequences (the serving path) and return them as Bars.

    Same rules and messages as :func:`validate_ohlcv`, without a DataFrame in between.
    """
    day_dates, bad_dates = parse_dates(dates)
    violations = date_violations(dates, bad_dates)
    columns = (open, high, low, close, volume)
    try:  # the common case in one conversion: five numeric columns of one length
        values = dict(zip(VALUE_COLUMNS, np.array(columns, dtype=np.float64), strict=True))
    except (ValueError, TypeError):
        values = {}
        for name, raw in zip(VALUE_COLUMNS, columns, strict=True):
            try:
                values[name] = np.array(raw, dtype=np.float64)
            except (ValueError, TypeError):
                values[name] = _coerce_numeric(pd.Series(raw, dtype=object), name, violations)
    lengths = {len(day_dates), *(len(v) for v in values.values())}
    if len(lengths) > 1:
        raise OHLCVValidationError(
            [Violation(Rule.LENGTH_MISMATCH, "date, open, high, low, close and volume must have the same length")]
        )
    if len(day_dates) < min_bars:
        violations.append(
            Violation(
                Rule.TOO_FEW_BARS, f"{len(day_dates)} bars given, at least {min_bars} are needed", value=len(day_dates)
            )
        )
    violations.extend(check_bar_values(day_dates, values))
    _raise_if_any(violations)
    return Bars(day_dates, values["open"], values["high"], values["low"], values["close"], values["volume"])
