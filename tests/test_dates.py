"""One rule for a bar's date (features/dates.py), the same at every entry point: files, the service's bars, batch files.

Before the rule had one home, the CSV source read dates with pandas' ``format="mixed"`` (``2018-1-2`` passed), the
service with numpy (``2018-1-2`` failed, but ``2018-01``, ``20180102`` (the year 20180102) and ``today`` passed,
and ``2018-01-02T00:00+01:00`` became 2018-01-01), and batch CSV files with ``read_csv(parse_dates=...)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bentos.batch import read_chunks
from bentos.inputs import bars_of, bars_of_many
from bentos.schemas import BadInput, BarWindow
from data.pull import pull
from data.snapshots import SnapshotStore
from data.sources import CsvSource
from features.dates import parse_dates
from features.ohlcv import OHLCVValidationError, validate_bars, validate_ohlcv, validate_stacked
from tests.conftest import make_bars

ACCEPTED = {
    "2018-01-02": "2018-01-02",
    "2016-02-29": "2016-02-29",
    "1969-12-31": "1969-12-31",
    # a time of day is dropped: the day is the date as written, in the value's own zone, never converted
    "2018-01-02T00:00": "2018-01-02",
    "2018-01-02 00:00:00": "2018-01-02",
    "2018-01-02 16:00:00-05:00": "2018-01-02",
    "2018-01-02T00:00:00+09:00": "2018-01-02",  # numpy made this 2018-01-01 (UTC)
    "2018-01-02T21:00:00.123456Z": "2018-01-02",
}
REJECTED = [
    "2018-1-2",
    "2018-01-2",
    "2018-01",
    "2018",
    "20180102",
    "01/02/2018",
    "02.01.2018",
    "2018-02-30",
    "2018-02-29",
    "1900-02-29",
    "2018-13-01",
    "2018-00-10",
    "2018-01-00",
    " 2018-01-02",
    "2018-01-02 ",
    "+2018-01-02",
    "2018-01-02Z",
    "2018-01-02T24:00",
    "2018-01-02T10",
    "２０１８-01-02",  # full-width digits
    "today",
    "NaT",
    "",
    None,
    float("nan"),
    20180102,
]


@pytest.mark.parametrize(("text", "day"), list(ACCEPTED.items()))
def test_the_rule_accepts_iso_dates_and_drops_a_time_of_day(text: str, day: str) -> None:
    days, bad = parse_dates([text, "2018-01-03"])
    assert not bad.any()
    assert str(days[0]) == day


@pytest.mark.parametrize("value", REJECTED, ids=repr)
def test_the_rule_rejects_everything_else(value: object) -> None:
    days, bad = parse_dates(["2018-01-03", value])
    assert bad.tolist() == [False, True]
    assert np.isnat(days[1])


def test_typed_dates_are_their_wall_clock_day() -> None:
    new_york = pd.Series(pd.date_range("2018-01-02 16:00", periods=3, tz="America/New_York"))
    expected = ["2018-01-02", "2018-01-03", "2018-01-04"]
    for values in (
        new_york,
        pd.DatetimeIndex(new_york),
        new_york.dt.tz_convert("Asia/Tokyo").dt.tz_localize(None).dt.normalize(),  # naive midnights
        new_york.tolist(),  # Timestamp objects (an object column)
        [dt.date(2018, 1, 2), dt.date(2018, 1, 3), dt.date(2018, 1, 4)],
        np.array(["2018-01-02T16:00", "2018-01-03T16:00", "2018-01-04T16:00"], dtype="datetime64[m]"),
    ):
        days, bad = parse_dates(values)
        assert not bad.any()
        got = [str(d) for d in days]
        assert got == expected or got == ["2018-01-03", "2018-01-04", "2018-01-05"]  # Tokyo is a day ahead
    days, bad = parse_dates(pd.Series([pd.Timestamp("2018-01-02"), pd.NaT]))
    assert bad.tolist() == [False, True]


def test_many_dates_are_parsed_whole_and_bad_ones_found() -> None:
    text = pd.bdate_range("1999-01-04", periods=50_000).strftime("%Y-%m-%d").to_numpy()
    days, bad = parse_dates(text)
    assert not bad.any()
    np.testing.assert_array_equal(days, pd.bdate_range("1999-01-04", periods=50_000).to_numpy().astype("M8[D]"))
    text = text.astype(object)
    text[[7, 4_000, 49_999]] = ["2018-02-30", "2018-1-2", "2018-01-02 16:00"]
    days, bad = parse_dates(text)
    assert np.flatnonzero(bad).tolist() == [7, 4_000]
    assert str(days[49_999]) == "2018-01-02"


# ---------------------------------------------------------------------------------------------- entry points

N = 260  # the service needs the models' lookback + 1 (252) bars


def dates_with(row: int, text: str) -> list[str]:
    dates = make_bars(N)["date"].dt.strftime("%Y-%m-%d").tolist()
    dates[row] = text
    return dates


def through_csv_source(dates: list[str], tmp: Path) -> np.ndarray:
    """``mlops data pull --source csv``: the file is read and validated into a snapshot."""
    frame = make_bars(N).assign(date=dates)
    frame.to_csv(tmp / "X.csv", index=False)
    store = SnapshotStore(tmp / "snapshots")
    info, _ = pull(CsvSource(tmp / "X.csv"), store)
    return store.load(info.id)["date"].to_numpy().astype("datetime64[D]")


def through_validate_ohlcv(dates: list[str], tmp: Path) -> np.ndarray:
    """A frame handed to the contract as it is (training, the snapshot store)."""
    return validate_ohlcv(make_bars(N).assign(date=dates))["date"].to_numpy().astype("datetime64[D]")


def window(dates: list[str]) -> BarWindow:
    frame = make_bars(N)
    return BarWindow(date=dates, **{c: frame[c].tolist() for c in ("open", "high", "low", "close", "volume")})


def through_service_window(dates: list[str], tmp: Path) -> np.ndarray:
    """The service's bars: every method's window goes through ``bentos.inputs.bars_of`` (400 on a violation)."""
    return bars_of(window(dates), max_bars=10_000).dates


def through_service_windows(dates: list[str], tmp: Path) -> np.ndarray:
    """Concurrent windows of one length are validated stacked (``validate_stacked``), each alone on a failure."""
    first, second = bars_of_many([window(dates), window(dates)], max_bars=10_000)
    for answer in (first, second):
        if isinstance(answer, Exception):
            raise answer
    assert not isinstance(first, Exception)
    return first.dates


def through_batch_csv(dates: list[str], tmp: Path) -> np.ndarray:
    """``mlops batch`` on a CSV file: chunks read by ``bentos.batch.read_chunks``, validated as BatchScorer does."""
    make_bars(N).assign(date=dates, symbol="X").to_csv(tmp / "batch.csv", index=False)
    (chunk,) = read_chunks(tmp / "batch.csv", chunk_rows=10_000)
    return validate_ohlcv(chunk.frame, panel=True)["date"].to_numpy().astype("datetime64[D]")


def through_batch_parquet(dates: list[str], tmp: Path) -> np.ndarray:
    """``mlops batch`` on a Parquet file whose dates are text."""
    make_bars(N).assign(date=dates, symbol="X").to_parquet(tmp / "batch.parquet", index=False)
    (chunk,) = read_chunks(tmp / "batch.parquet", chunk_rows=10_000)
    return validate_ohlcv(chunk.frame, panel=True)["date"].to_numpy().astype("datetime64[D]")


ENTRY_POINTS: dict[str, Callable[[list[str], Path], np.ndarray]] = {
    "csv source": through_csv_source,
    "frame": through_validate_ohlcv,
    "service window": through_service_window,
    "service, concurrent windows": through_service_windows,
    "batch csv": through_batch_csv,
    "batch parquet": through_batch_parquet,
}


REJECTED_AT_ENTRY = ["2018-1-2", "2018-01", "20180102", "today"]
#: what pandas' read_csv(parse_dates=...) turns into a date (the others leave the column as text, and it is refused)


@pytest.mark.parametrize(
    ("entry", "text"),
    [(entry, text) for entry in ENTRY_POINTS for text in REJECTED_AT_ENTRY],
)
def test_every_entry_point_rejects_what_the_rule_rejects(entry: str, text: str, tmp_path: Path) -> None:
    with pytest.raises((OHLCVValidationError, BadInput)) as caught:
        ENTRY_POINTS[entry](dates_with(N - 1, text), tmp_path)
    assert f"date={text!r} is not a date of the form YYYY-MM-DD [date_invalid]" in str(caught.value)


def test_stacked_windows_with_a_bad_date_are_left_to_each_alone() -> None:
    good, bad = window(dates_with(3, "2020-01-07")), window(dates_with(3, "2020-1-07"))  # make_bars' 4th day
    columns = ("date", "open", "high", "low", "close", "volume")
    assert validate_stacked(*([getattr(w, c) for w in (good, good)] for c in columns), min_bars=252) is not None
    assert validate_stacked(*([getattr(w, c) for w in (good, bad)] for c in columns), min_bars=252) is None


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_entry_point_reads_a_date_with_a_time_as_its_day(entry: str, tmp_path: Path) -> None:
    plain = make_bars(N)["date"].dt.strftime("%Y-%m-%d").tolist()
    timed = [f"{d} 16:00:00-05:00" for d in plain]
    np.testing.assert_array_equal(ENTRY_POINTS[entry](timed, tmp_path), np.array(plain, dtype="datetime64[D]"))


def test_the_service_names_the_row_and_the_form() -> None:
    with pytest.raises(
        BadInput, match=r"row 259.*date='2018-1-2' is not a date of the form YYYY-MM-DD \[date_invalid\]"
    ):
        bars_of(window(dates_with(N - 1, "2018-1-2")), max_bars=10_000)
    with pytest.raises(OHLCVValidationError, match=r"row 3: date='2018-1-2' is not a date"):
        validate_bars(["2018-01-02", "2018-01-03", "2018-01-04", "2018-1-2"], *([[1.0] * 4] * 5))


def test_a_frame_names_dates_it_cannot_hold() -> None:
    """Frames hold datetime64[ns] (1677-09-22..2262-04-11); the service's windows hold days and take any year."""
    frame = make_bars(3).assign(date=["1600-01-03", "2020-01-03", "2300-01-02"])
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(frame)
    assert [(v.rule, v.row) for v in caught.value.violations] == [("date_out_of_range", 0), ("date_out_of_range", 2)]
    assert "date 1600-01-03 is outside the days a frame holds (1677-09-22..2262-04-11)" in str(caught.value)
    bars = validate_bars(["1600-01-03", "1600-01-04"], [1.0] * 2, [1.0] * 2, [1.0] * 2, [1.0] * 2, [1.0] * 2)
    assert str(bars.dates[0]) == "1600-01-03"
