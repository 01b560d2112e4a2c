"""The one rule for a bar's date, used by every entry point: files (the CSV source, batch files), the service's bars.

A date is a calendar day, given either as

* text: ``YYYY-MM-DD`` exactly (ISO 8601's calendar date: four-digit year, two-digit month and day, ASCII digits, a
  day that exists), optionally followed by a time of day (``T`` or a space, ``HH:MM``, ``HH:MM:SS`` or with a
  fraction of seconds, then optionally ``Z`` or an offset ``+HH:MM`` / ``-HHMM``); or
* a date or timestamp value: numpy ``datetime64``, pandas or Python dates and datetimes (time zone aware or not),
  Parquet dates and timestamps.

The day is the date as written: the wall-clock date in the value's own time zone. A time of day and a zone are
dropped, never converted (a New York close at 16:00-05:00 is 21:00 UTC the same day, but a Tokyo bar stamped at
midnight +09:00 is the previous day in UTC: converting moves bars between sessions).

Anything else is not a date and is reported as such with its row: ``2018-1-2``, ``2018-01``, ``20180102``,
``01/02/2018``, ``2018-02-30``, `` 2018-01-02`` (spaces), ``today``, an empty cell.

Why a time is dropped rather than rejected: dates typed as timestamps have always been reduced to their day (the
yfinance index is midnight New York time, Parquet files carry timestamps), so the same instant written as text must
give the same day, or a CSV and a Parquet file of the same bars would disagree. Intraday bars are not merged
silently: two bars of one day break the contract's unique-date rule (``date_duplicate``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from typing import Any

import numpy as np
import pandas as pd

from features.violations import Rule, Violation

#: The form of a date written as text.
DATE_FORMAT = "YYYY-MM-DD"
#: What may follow the date: a time of day and a zone, both dropped.
_TIME_OF_DAY = re.compile(
    r"[T ](?:[01]\d|2[0-3]):[0-5]\d(?::(?:[0-5]\d|60)(?:\.\d{1,9})?)?(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\d)?"
)
#: YYYY-MM-DD character by character: each code point minus the lowest it may be is at most the span.
_LOWEST = np.array([ord(c) for c in "0000-00-00"], dtype=np.uint32)
_SPAN = np.array([9, 9, 9, 9, 0, 9, 9, 0, 9, 9], dtype=np.uint32)
#: The same for YYYY-MM-DD and a NUL, one byte a character.
_LOWEST_BYTES = np.append(_LOWEST, 0).astype(np.uint8)
_SPAN_BYTES = np.append(_SPAN, 0).astype(np.uint8)
_WIDTH = len(DATE_FORMAT) + 1
#: Positions of the digits in YYYY-MM-DD.
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9])
_ZERO = ord("0")


def parse_dates(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (a sequence, array or pandas column, of any shape) as datetime64[D] and a mask of non-dates.

    Where the mask is True the value is not a date by the module's rule, and the date is NaT.
    """
    if isinstance(values, pd.DatetimeIndex):  # the wall-clock date in its own zone
        values = values.tz_localize(None)
    elif isinstance(values, pd.Series) and isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_localize(None)
    if isinstance(values, pd.Series | pd.Index):
        values = values.to_numpy()
    days = _plain_iso(values)
    if days is not None:
        return days, np.zeros(days.shape, dtype=bool)
    array = np.asarray(values)
    if array.dtype.kind == "M":
        days = array.astype("datetime64[D]")
        return days, np.isnat(days)
    return _parse_text(array if array.dtype.kind == "U" else array.astype(str))  # objects by their text (ISO)


def parse_day(text: str) -> dt.date:
    """One day given on a command line or in a setting, by the same rule as a bar's date; ValueError otherwise."""
    days, bad = parse_dates([text])
    if bad[0]:
        raise ValueError(f"{text!r} is not a date: write {DATE_FORMAT}")
    return dt.date.fromisoformat(str(days[0]))


def _plain_iso(values: Any) -> np.ndarray | None:
    """The days, if every value is a Python string of exactly YYYY-MM-DD naming a real day (the common case), else
    None. Checked on the strings joined by NUL, one byte a character, so that a value of another length moves the
    separators; numpy's parser then reads them from Python strings and checks the days. The text arrays of the
    general path take 2-3x longer to build (a list of 300 dates: ~35 us, this ~5 us before numpy's ~20 us)."""
    flat: Any
    if isinstance(values, np.ndarray):
        if values.dtype != object:
            return None
        shape, flat = values.shape, values.reshape(-1)
    elif isinstance(values, list | tuple):
        shape, flat = (len(values),), values
        if values and isinstance(values[0], list | tuple):  # windows of equal length, stacked
            shape = (len(values), len(values[0]))
            if any(len(row) != shape[1] for row in values):
                return None
            flat = list(itertools.chain.from_iterable(values))
    else:
        return None
    try:
        raw = "\0".join(flat).encode("ascii") + b"\0"  # TypeError: not all strings; UnicodeError: not all ASCII
    except (TypeError, UnicodeError):
        return None
    if len(flat) == 0 or len(raw) != _WIDTH * len(flat):
        return None
    if not ((np.frombuffer(raw, dtype=np.uint8).reshape(-1, _WIDTH) - _LOWEST_BYTES) <= _SPAN_BYTES).all():
        return None
    try:
        return np.asarray(flat, dtype="datetime64[D]").reshape(shape)
    except ValueError:  # a day that does not exist (2018-02-30): the general path names it
        return None


def _parse_text(text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value by the rule, vectorised over its characters (UTF-32 code points) and computed from its digits."""
    shape, flat = text.shape, np.ascontiguousarray(text).reshape(-1)
    width = flat.dtype.itemsize // 4
    if width < len(DATE_FORMAT) or flat.shape[0] == 0:
        return np.full(shape, np.datetime64("NaT"), dtype="datetime64[D]"), np.ones(shape, dtype=bool)
    codes = flat.view(np.uint32).reshape(-1, width).T  # one row per character position: fast whole-row operations
    ok: Any = ((codes[: len(DATE_FORMAT)] - _LOWEST[:, None]) <= _SPAN[:, None]).all(axis=0)  # below wraps
    if width > len(DATE_FORMAT):
        timed = ok & (codes[len(DATE_FORMAT) :] != 0).any(axis=0)  # numpy pads shorter strings with NUL
        if timed.any():
            suffixes = np.ascontiguousarray(codes[len(DATE_FORMAT) :, timed].T).view(f"<U{width - len(DATE_FORMAT)}")
            distinct, which = np.unique(suffixes.reshape(-1), return_inverse=True)  # a file has one or two
            good = np.array([_TIME_OF_DAY.fullmatch(s) is not None for s in distinct.tolist()])
            ok[timed] = good[which.reshape(-1)]
    digits = codes[_DIGITS].astype(np.int64) - _ZERO
    year = digits[0] * 1000 + digits[1] * 100 + digits[2] * 10 + digits[3]
    month, day = digits[4] * 10 + digits[5], digits[6] * 10 + digits[7]
    ok &= (month >= 1) & (month <= 12) & (day >= 1)
    month_index = np.where(ok, (year - 1970) * 12 + month - 1, 0)
    first = month_index.view("datetime64[M]").astype("datetime64[D]")
    length = ((month_index + 1).view("datetime64[M]").astype("datetime64[D]") - first).astype(np.int64)
    ok &= day <= length  # 2018-02-30 is not a day
    days = np.where(ok, first + np.where(ok, day - 1, 0), np.datetime64("NaT", "D"))
    return days.reshape(shape), ~ok.reshape(shape)


def date_violations(values: Any, bad: np.ndarray, row_offset: int = 0) -> list[Violation]:
    """One ``date_invalid`` violation per row of ``values`` that ``bad`` marks, naming the value as given."""
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return []
    given = values.iloc if isinstance(values, pd.Series) else values
    return [
        Violation(
            Rule.DATE_INVALID,
            f"date={given[row]!r} is not a date of the form {DATE_FORMAT}",
            row=int(row) + row_offset,
            column="date",
            value=str(given[row]),
        )
        for row in rows.tolist()
    ]
