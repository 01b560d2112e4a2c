"""Trading days (features/calendar.py): exchange_calendars' sessions, the symbol's calendar, the lazy import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from features.calendar import (
    CALENDAR_ENV,
    SPAN,
    SYMBOL_CALENDARS_ENV,
    UnknownCalendarError,
    calendar_name,
    trading_calendar,
)
from tests.integration_helpers import ROOT

#: The unscheduled NYSE closures since 1999 that data/quality.py used to list by hand.
HAND_LISTED_CLOSURES = (
    "2001-09-11",
    "2001-09-12",
    "2001-09-13",
    "2001-09-14",
    "2004-06-11",
    "2007-01-02",
    "2012-10-29",
    "2012-10-30",
    "2018-12-05",
    "2025-01-09",
)


def days(*text: str) -> np.ndarray:
    return np.array(text, dtype="datetime64[D]")


def test_the_sessions_after_a_day_skip_weekends_and_holidays() -> None:
    xnys = trading_calendar("XNYS")
    np.testing.assert_array_equal(
        xnys.sessions_after("2018-12-21", 5), days("2018-12-24", "2018-12-26", "2018-12-27", "2018-12-28", "2018-12-31")
    )
    assert str(xnys.sessions_after("2018-12-21", 6)[-1]) == "2019-01-02"  # not New Year's Day
    # from a day that is not a session itself (a Saturday, Christmas Day)
    assert str(xnys.sessions_after("2018-12-22", 1)[0]) == "2018-12-24"
    assert str(xnys.sessions_after("2018-12-25", 1)[0]) == "2018-12-26"


def test_the_library_knows_every_closure_once_listed_by_hand() -> None:
    xnys = trading_calendar("XNYS")
    assert not xnys.is_session(days(*HAND_LISTED_CLOSURES)).any()
    assert xnys.is_session(days("2001-09-10", "2001-09-17", "2012-10-31")).all()


def test_sessions_between_count_only_sessions() -> None:
    xnys = trading_calendar("XNYS")
    counts = xnys.sessions_between(
        days("2001-09-10", "2018-12-21", "2018-12-21"), days("2001-09-17", "2018-12-26", "2018-12-27")
    )
    assert counts.tolist() == [0, 1, 2]  # the closed week after 9/11; 24 December (Christmas Day is no session)


def test_outside_the_span_every_weekday_is_a_session() -> None:
    xnys = trading_calendar("XNYS")
    assert xnys.first >= SPAN[0] and xnys.last <= SPAN[1]
    # no calendar is known in 9999 (pandas' holiday rules stop there): weekdays, as the service forecasts them
    np.testing.assert_array_equal(xnys.sessions_after("9998-12-31", 3), days("9999-01-01", "9999-01-04", "9999-01-05"))


def test_the_calendar_of_a_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CALENDAR_ENV, raising=False)
    monkeypatch.delenv(SYMBOL_CALENDARS_ENV, raising=False)
    assert calendar_name("^GSPC") == calendar_name() == "XNYS"
    monkeypatch.setenv(SYMBOL_CALENDARS_ENV, "7203.T=XTKS, ^FTSE = XLON")
    assert (calendar_name("7203.T"), calendar_name("^FTSE"), calendar_name("^GSPC")) == ("XTKS", "XLON", "XNYS")
    monkeypatch.setenv(CALENDAR_ENV, "XLON")
    assert calendar_name("^GSPC") == "XLON"
    xtks = trading_calendar(calendar_name("7203.T"))
    assert str(xtks.sessions_after("2019-12-30", 1)[0]) == "2020-01-06"  # Tokyo closes for the new year


def test_an_unknown_calendar_is_named() -> None:
    with pytest.raises(UnknownCalendarError, match=r"no trading calendar 'XXXX'.*XNYS"):
        trading_calendar("XXXX")


def test_the_library_is_imported_only_when_a_calendar_is_used() -> None:
    """exchange_calendars costs ~0.2 s to import and ~0.5 s per calendar: never on import of the contract."""
    code = (
        "import sys, features, features.calendar, data.quality\n"
        "assert 'exchange_calendars' not in sys.modules, 'imported eagerly'\n"
        "features.calendar.trading_calendar('XNYS')\n"
        "assert 'exchange_calendars' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
