"""Sanity checks of a snapshot before training (data/quality.py): gaps, stale prices, jumps, the contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.quality import SanityThresholds, validate_snapshot


def test_the_embedded_data_passes_every_sanity_check(embedded_bars: pd.DataFrame) -> None:
    report = validate_snapshot(embedded_bars, "embedded")
    assert report.usable and report.findings == []
    # London traded the week of 11 September 2001: on its calendar, New York's four closed days are missing bars
    on_london_days = validate_snapshot(embedded_bars, "embedded", SanityThresholds(calendar="XLON"))
    assert [(f.check, f.symbol, f.date, f.value) for f in on_london_days.warnings] == [
        ("gap", "^GSPC", "2001-09-17", 4.0),
        ("gap", "^IXIC", "2001-09-17", 4.0),
    ]


def symbol_bars(embedded_bars: pd.DataFrame, symbol: str = "^GSPC") -> pd.DataFrame:
    return embedded_bars[embedded_bars["symbol"] == symbol].reset_index(drop=True)


def test_gaps_warn_then_fail(embedded_bars: pd.DataFrame) -> None:
    bars = symbol_bars(embedded_bars)
    three = bars.drop(index=range(1000, 1003))  # the sessions of 2002-12-26, -27 and -30
    (finding,) = validate_snapshot(three).findings
    assert (finding.check, finding.severity, finding.date) == ("gap", "warning", "2002-12-31")
    assert finding.value == 3.0  # three sessions: Christmas Day is a holiday, not missing data
    month = bars.drop(index=range(1000, 1021))  # 21 sessions (and New Year's Day and Martin Luther King Day)
    (finding,) = validate_snapshot(month).findings
    assert finding.severity == "error" and finding.value == 21.0
    assert finding.message == "21 XNYS sessions without a bar between 2002-12-24 and 2003-01-28"


def test_stale_prices_warn_then_fail(embedded_bars: pd.DataFrame) -> None:
    bars = symbol_bars(embedded_bars)
    price = float(bars.loc[2000, "close"])
    for stuck, severity in ((4, "warning"), (11, "error")):
        frozen = bars.copy()
        frozen.loc[2000 : 2000 + stuck, ["open", "high", "low", "close"]] = price
        stale = [f for f in validate_snapshot(frozen).findings if f.check == "stale_price"]
        assert [(f.severity, f.value) for f in stale] == [(severity, float(stuck))]


def test_implausible_jumps_warn_then_fail(embedded_bars: pd.DataFrame) -> None:
    bars = symbol_bars(embedded_bars)
    for factor, severity in ((1.2, "warning"), (2.0, "error")):  # +18 %, then an unadjusted 2:1 split
        jumped = bars.copy()
        jumped.loc[3000:, ["open", "high", "low", "close"]] *= factor
        (finding,) = validate_snapshot(jumped).findings
        assert (finding.check, finding.severity) == ("jump", severity)
        assert finding.value == pytest.approx(np.log(factor), abs=0.02)


def test_contract_violations_and_short_histories_make_a_snapshot_unusable(embedded_bars: pd.DataFrame) -> None:
    bars = symbol_bars(embedded_bars).assign(symbol="^GSPC")
    broken = bars.copy()
    broken.loc[17, "low"] = -1.0
    report = validate_snapshot(broken, "x")
    assert not report.usable and report.errors[0].check == "ohlcv_contract"
    assert "low=-1.0 must be > 0" in report.render()
    short = validate_snapshot(bars.iloc[:100])
    assert [f.check for f in short.errors] == ["too_few_bars"]


def test_thresholds_must_warn_before_they_fail() -> None:
    with pytest.raises(ValueError, match=r"jump: the warning threshold 0\.6 is above the error threshold 0\.5"):
        SanityThresholds(jump_warn_log_return=0.6)
