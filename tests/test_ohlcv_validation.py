"""Every rule of the OHLCV contract, reported with its row and rule, all at once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.ohlcv import OHLCVValidationError, Rule, validate_bars, validate_ohlcv, validate_stacked
from tests.conftest import as_panel, make_bars


def violations_of(frame: pd.DataFrame, **kwargs: object) -> list[tuple[str, int | None, str | None]]:
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(frame, **kwargs)  # type: ignore[arg-type]
    return [(v.rule, v.row, v.column) for v in caught.value.violations]


def test_valid_frame_is_returned_normalised() -> None:
    frame = make_bars(5)
    frame["volume"] = frame["volume"].astype("int64")
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    result = validate_ohlcv(frame)
    assert list(result.columns) == ["date", "open", "high", "low", "close", "volume"]
    assert result["date"].dtype == "datetime64[ns]"
    assert all(result[c].dtype == np.float64 for c in ["open", "high", "low", "close", "volume"])
    assert result["date"].iloc[0] == pd.Timestamp("2020-01-02")


def test_time_zones_and_times_are_reduced_to_the_day() -> None:
    frame = make_bars(3)
    frame["date"] = frame["date"].dt.tz_localize("America/New_York") + pd.Timedelta(hours=16)
    result = validate_ohlcv(frame)
    assert result["date"].tolist() == list(pd.bdate_range("2020-01-02", periods=3))


def test_missing_columns_are_all_named() -> None:
    frame = make_bars(5).drop(columns=["high", "volume"])
    assert violations_of(frame) == [
        (Rule.MISSING_COLUMN, None, "high"),
        (Rule.MISSING_COLUMN, None, "volume"),
    ]


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", np.nan, Rule.NOT_FINITE),
        ("open", np.inf, Rule.NOT_FINITE),
        ("volume", -np.inf, Rule.NOT_FINITE),
        ("low", 0.0, Rule.PRICE_NOT_POSITIVE),
        ("low", -1.0, Rule.PRICE_NOT_POSITIVE),
        ("volume", -5.0, Rule.VOLUME_NEGATIVE),
    ],
)
def test_value_rules(column: str, value: float, rule: str) -> None:
    frame = make_bars(10)
    frame.loc[4, column] = value
    found = violations_of(frame)
    assert (rule, 4, column) in found


def test_high_below_open_or_close() -> None:
    frame = make_bars(10)
    frame.loc[3, "high"] = max(frame.loc[3, "open"], frame.loc[3, "close"]) - 0.01
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(frame)
    (violation,) = caught.value.violations
    assert (violation.rule, violation.row, violation.date) == (Rule.HIGH_BELOW_OPEN_CLOSE, 3, "2020-01-07")
    assert "row 3" in str(caught.value)
    assert "high_below_open_close" in str(caught.value)


def test_low_above_open_or_close() -> None:
    frame = make_bars(10)
    frame.loc[6, "low"] = min(frame.loc[6, "open"], frame.loc[6, "close"]) + 0.01
    assert violations_of(frame) == [(Rule.LOW_ABOVE_OPEN_CLOSE, 6, "low")]


def test_high_below_low_is_caught_by_the_price_rules() -> None:
    frame = make_bars(10)
    frame.loc[2, ["high", "low"]] = [frame.loc[2, "low"], frame.loc[2, "high"]]
    rules = {r for r, row, _ in violations_of(frame) if row == 2}
    assert rules == {Rule.HIGH_BELOW_OPEN_CLOSE, Rule.LOW_ABOVE_OPEN_CLOSE}


def test_strings_for_numbers_are_reported_per_row() -> None:
    frame = make_bars(6).astype({"close": object})
    frame.loc[1, "close"] = "abc"
    frame.loc[5, "close"] = "12.5x"
    found = violations_of(frame)
    assert (Rule.NOT_NUMERIC, 1, "close") in found
    assert (Rule.NOT_NUMERIC, 5, "close") in found


def test_numeric_strings_are_accepted() -> None:
    frame = make_bars(4).astype({"open": str})
    assert validate_ohlcv(frame)["open"].dtype == np.float64


def test_boolean_column_is_not_numeric() -> None:
    frame = make_bars(4)
    frame["volume"] = True
    assert (Rule.NOT_NUMERIC, None, "volume") in violations_of(frame)


def test_invalid_dates() -> None:
    frame = make_bars(4)
    frame["date"] = ["2020-01-02", "not a date", "2020-01-06", "2020-01-07"]
    assert violations_of(frame) == [(Rule.DATE_INVALID, 1, "date")]


def test_duplicate_and_unsorted_dates() -> None:
    frame = make_bars(6)
    frame.loc[2, "date"] = frame.loc[1, "date"]
    frame.loc[5, "date"] = frame.loc[0, "date"]
    found = violations_of(frame)
    assert found == [(Rule.DATE_DUPLICATE, 2, "date"), (Rule.DATE_UNSORTED, 5, "date")]


def test_too_few_bars_says_how_many_are_needed() -> None:
    with pytest.raises(OHLCVValidationError, match="3 bars given, at least 252 are needed"):
        validate_ohlcv(make_bars(3), min_bars=252)


def test_all_violations_are_reported_at_once() -> None:
    frame = make_bars(30)
    frame.loc[1, "close"] = np.nan
    frame.loc[7, "volume"] = -1
    frame.loc[9, "open"] = -3
    frame.loc[20, "date"] = frame.loc[19, "date"]
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(frame, min_bars=40)
    rows_rules = [(v.row, v.rule) for v in caught.value.violations]
    assert (None, Rule.TOO_FEW_BARS) in rows_rules
    assert (1, Rule.NOT_FINITE) in rows_rules
    assert (7, Rule.VOLUME_NEGATIVE) in rows_rules
    assert (9, Rule.PRICE_NOT_POSITIVE) in rows_rules
    assert (20, Rule.DATE_DUPLICATE) in rows_rules
    assert rows_rules == sorted(rows_rules, key=lambda x: -1 if x[0] is None else x[0])


def test_long_reports_are_truncated_in_the_message_but_complete_in_the_error() -> None:
    frame = make_bars(100)
    frame["volume"] = -1.0
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(frame)
    assert len(caught.value.violations) == 100
    assert "and 80 more" in str(caught.value)


def test_violation_serialises_to_json_ready_dict() -> None:
    frame = make_bars(3)
    frame.loc[0, "close"] = np.inf
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(frame)
    as_dict = caught.value.violations[0].to_dict()
    assert as_dict["value"] == "inf"
    assert as_dict["row"] == 0
    assert as_dict["rule"] == Rule.NOT_FINITE


def test_panel_checks_date_order_within_each_symbol() -> None:
    panel = as_panel(("A", make_bars(5)), ("B", make_bars(5)))
    # interleaved symbols are fine as long as each symbol's dates increase
    interleaved = panel.iloc[[0, 5, 1, 6, 2, 7, 3, 8, 4, 9]].reset_index(drop=True)
    assert len(validate_ohlcv(interleaved, panel=True)) == 10
    panel.loc[7, "date"] = panel.loc[6, "date"]
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(panel, panel=True)
    (violation,) = caught.value.violations
    assert (violation.rule, violation.row, violation.symbol) == (Rule.DATE_DUPLICATE, 7, "B")


def test_panel_order_across_blocks_of_the_same_symbol() -> None:
    """A symbol whose rows come back after another's is checked against its own earlier rows."""
    a, b = make_bars(6), make_bars(4, start="2021-01-04")
    back = as_panel(("A", a.iloc[:3]), ("B", b), ("A", a.iloc[3:]))
    assert len(validate_ohlcv(back, panel=True)) == 10  # A continues where it left off
    back = as_panel(("A", a.iloc[3:]), ("B", b), ("A", a.iloc[:3]))
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(back, panel=True)
    assert [(v.rule, v.row, v.symbol) for v in caught.value.violations] == [(Rule.DATE_UNSORTED, 7, "A")]
    missing = as_panel(("A", a), ("B", b))
    missing.loc[6, "date"] = None  # the first row of B's block
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(missing, panel=True)
    assert [(v.rule, v.row) for v in caught.value.violations] == [(Rule.DATE_INVALID, 6)]


def test_panel_too_few_bars_names_the_symbol() -> None:
    panel = as_panel(("A", make_bars(50)), ("B", make_bars(5)))
    with pytest.raises(OHLCVValidationError) as caught:
        validate_ohlcv(panel, panel=True, min_bars=10)
    (violation,) = caught.value.violations
    assert violation.symbol == "B"
    assert violation.rule == Rule.TOO_FEW_BARS


def test_panel_requires_symbol_column() -> None:
    assert violations_of(make_bars(3), panel=True) == [(Rule.MISSING_COLUMN, None, "symbol")]


def test_embedded_data_satisfies_the_contract(embedded_bars: pd.DataFrame) -> None:
    result = validate_ohlcv(embedded_bars, panel=True)
    assert result.groupby("symbol").size().to_dict() == {"^GSPC": 5031, "^IXIC": 5031}


def test_validate_bars_is_the_same_contract_on_arrays() -> None:
    frame = make_bars(8)
    bars = validate_bars(
        frame["date"].dt.strftime("%Y-%m-%d").tolist(),
        *(frame[c].tolist() for c in ["open", "high", "low", "close", "volume"]),
    )
    np.testing.assert_array_equal(bars.close, frame["close"].to_numpy())
    assert str(bars.dates[0]) == "2020-01-02"


def test_validate_bars_reports_every_violation_once() -> None:
    with pytest.raises(OHLCVValidationError) as caught:
        validate_bars(
            ["2020-01-02", "bad", "2020-01-06"],
            [1.0, "x", 2.0],
            [2.0, 3.0, 3.0],
            [0.5, 1.0, 1.0],
            [1.5, 2.5, 2.0],
            [10.0, 10.0, -1.0],
            min_bars=5,
        )
    found = [(v.rule, v.row, v.column) for v in caught.value.violations]
    assert found == [
        (Rule.TOO_FEW_BARS, None, None),
        (Rule.DATE_INVALID, 1, "date"),
        (Rule.NOT_NUMERIC, 1, "open"),
        (Rule.VOLUME_NEGATIVE, 2, "volume"),
    ]


def test_validate_bars_rejects_ragged_columns() -> None:
    with pytest.raises(OHLCVValidationError, match="same length"):
        validate_bars(["2020-01-02"], [1.0, 2.0], [2.0], [0.5], [1.5], [1.0])


def test_stacked_windows_give_the_bars_each_gets_alone_or_none_if_any_is_invalid() -> None:
    frames = [make_bars(300, seed=seed) for seed in (1, 2, 3)]
    columns = ("date", "open", "high", "low", "close", "volume")
    lists = [{c: (f[c].dt.strftime("%Y-%m-%d") if c == "date" else f[c]).tolist() for c in columns} for f in frames]
    stacked = validate_stacked(*([w[c] for w in lists] for c in columns), min_bars=252)
    assert stacked is not None and len(stacked) == 3
    for got, window in zip(stacked, lists, strict=True):
        alone = validate_bars(*(window[c] for c in columns), min_bars=252)
        for name in ("dates", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(getattr(got, name), getattr(alone, name))
    lists[1]["low"][7] = -1.0  # one bad window: the caller validates each alone for the message
    assert validate_stacked(*([w[c] for w in lists] for c in columns), min_bars=252) is None
    lists[1]["low"][7] = lists[0]["low"][7]
    lists[2]["date"][5], lists[2]["date"][6] = lists[2]["date"][6], lists[2]["date"][5]  # unsorted dates
    assert validate_stacked(*([w[c] for w in lists] for c in columns), min_bars=252) is None
    assert validate_stacked(*([w[c] for w in lists[:1]] for c in columns), min_bars=301) is None  # too few bars
