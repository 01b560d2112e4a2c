"""Trading days: the sessions of a symbol's exchange, from ``exchange_calendars``.

Used wherever a day must be a session: the snapshot checks (``data/quality.py``: a gap is sessions without a bar,
not weekdays) and Prophet's forecasts (``bentos/prophet_model.py``: a forecast is for the next sessions, never for a
day the market is closed).

Which calendar: ``MLOPS_SYMBOL_CALENDARS`` names a symbol's (``"7203.T=XTKS,^FTSE=XLON"``), else
``MLOPS_TRADING_CALENDAR``, else ``XNYS``: the embedded ^GSPC and ^IXIC trade on NYSE and NASDAQ days, which are
the same. ``exchange_calendars`` names its calendars by ISO 10383 MIC (``XNYS``, ``XLON``, ``XTKS``, ...).

Why ``exchange_calendars`` (Apache-2.0) and not ``pandas_market_calendars`` (MIT): the latter is a layer over the
former (it depends on it), so it would only add a package. It needs numpy >= 1.26.4 and pandas >= 1.5 and installs
with our pins (numpy 2.4, pandas 3.1), with ``pyluach``, ``toolz`` and ``korean_lunar_calendar`` (pure Python,
about 3 MB in all with itself).

Cost, paid once per calendar and process, on first use (never on import of this module): importing the library
takes ~0.2 s and building a calendar ~0.5 s (pandas' holiday rules; about the same for a span of 30 or 200 years).
A calendar is therefore built once over a wide span, ``SPAN``, and kept as a numpy business-day calendar (weekmask
and closed weekdays), which answers in microseconds. Outside the span no closure is known: every weekday of the
exchange's week counts as a session there. (A session on a day outside the exchange's present week, as some
exchanges had before they changed their week, is not represented.)
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_CALENDAR = "XNYS"
CALENDAR_ENV = "MLOPS_TRADING_CALENDAR"
SYMBOL_CALENDARS_ENV = "MLOPS_SYMBOL_CALENDARS"
#: The days each calendar is built over (XNYS's history starts in 1885; holidays after today are its rules' dates).
SPAN = (np.datetime64("1885-01-01"), np.datetime64("2100-12-31"))


class UnknownCalendarError(ValueError):
    """A calendar name ``exchange_calendars`` does not know."""


def calendar_name(symbol: str | None = None) -> str:
    """The calendar of ``symbol``: its ``MLOPS_SYMBOL_CALENDARS`` entry, else ``MLOPS_TRADING_CALENDAR``, else XNYS."""
    if symbol is not None:
        for entry in os.environ.get(SYMBOL_CALENDARS_ENV, "").split(","):
            name, _, calendar = entry.partition("=")
            if calendar.strip() and name.strip() == symbol:
                return calendar.strip()
    return os.environ.get(CALENDAR_ENV, "").strip() or DEFAULT_CALENDAR


@dataclass(frozen=True)
class TradingCalendar:
    """An exchange's sessions as a numpy business-day calendar: its weekmask and the weekdays it is closed."""

    name: str
    busdaycalendar: np.busdaycalendar  # the weekmask, and the weekdays without a session within the span
    first: np.datetime64  # the span's first and last sessions
    last: np.datetime64

    @property
    def closures(self) -> np.ndarray:
        """The weekdays (of the exchange's week) without a session, datetime64[D]."""
        return np.asarray(self.busdaycalendar.holidays)

    def is_session(self, days: Any) -> np.ndarray:
        return np.is_busday(np.asarray(days, dtype="datetime64[D]"), busdaycal=self.busdaycalendar)

    def sessions_after(self, day: Any, periods: int) -> np.ndarray:
        """The ``periods`` sessions after ``day`` (datetime64[D]); ``day`` itself need not be a session."""
        if periods < 1:
            raise ValueError(f"periods must be >= 1, got {periods}")
        calendar = self.busdaycalendar
        last = np.busday_offset(np.datetime64(day, "D"), 0, roll="backward", busdaycal=calendar)
        return np.busday_offset(last, np.arange(1, periods + 1), busdaycal=calendar)

    def sessions_between(self, earlier: Any, later: Any) -> np.ndarray:
        """How many sessions lie strictly between each pair of days (element-wise, datetime64[D])."""
        first = np.asarray(earlier, dtype="datetime64[D]") + 1
        return np.busday_count(first, np.asarray(later, dtype="datetime64[D]"), busdaycal=self.busdaycalendar)


_BUILT: dict[str, TradingCalendar] = {}
_BUILDING = threading.Lock()


def trading_calendar(name: str | None = None) -> TradingCalendar:
    """The calendar called ``name`` (default: :func:`calendar_name`), built on first use and kept."""
    name = name or calendar_name()
    calendar = _BUILT.get(name)
    if calendar is None:
        with _BUILDING:  # concurrent first forecasts build it once
            calendar = _BUILT.get(name) or _build(name)
            _BUILT[name] = calendar
    return calendar


def _build(name: str) -> TradingCalendar:
    import exchange_calendars as xcals  # ~0.2 s: only where a calendar is used

    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values, which pandas 3.1 deprecates (XLON, calendars with breaks)
        warnings.simplefilter("ignore", pd.errors.Pandas4Warning)
        try:
            exchange = xcals.get_calendar(name, start=str(SPAN[0]), end=str(SPAN[1]))
        except xcals.errors.InvalidCalendarName:
            known = ", ".join(xcals.get_calendar_names(include_aliases=False))
            raise UnknownCalendarError(f"no trading calendar {name!r}; exchange_calendars knows {known}") from None
        except ValueError:  # a calendar whose history starts after SPAN's start: its own default span
            exchange = xcals.get_calendar(name)
    sessions = exchange.sessions.to_numpy().astype("datetime64[D]")
    first, last = sessions[0], sessions[-1]
    days = np.arange(first, last + 1)
    weekdays = days[np.is_busday(days, weekmask=exchange.weekmask)]
    closures = np.setdiff1d(weekdays, sessions, assume_unique=True)
    return TradingCalendar(name, np.busdaycalendar(weekmask=exchange.weekmask, holidays=closures), first, last)
