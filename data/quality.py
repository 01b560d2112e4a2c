"""Sanity checks a quant runs on a snapshot before training on it: the OHLCV contract, gaps, stale prices, jumps.

Each check has a warning threshold (worth a look, training goes on) and an error threshold (the data is unusable:
the retrain flow stops with the report). A gap is sessions of the symbol's exchange without a bar: the trading
calendar (``features.calendar``, exchange_calendars; XNYS unless ``MLOPS_SYMBOL_CALENDARS`` or
``MLOPS_TRADING_CALENDAR`` say otherwise) knows the holidays and the unscheduled closures (2001-09-11 to -14,
Hurricane Sandy, the state funerals), so none of them is missing data. The defaults pass the embedded S&P 500 and
NASDAQ bars with no warning: they miss no session; their largest daily move is the NASDAQ's +13.3 % log return on
2001-01-03, and no close repeats twice in a row.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from features import DEFAULT_SPEC
from features.calendar import TradingCalendar, calendar_name, trading_calendar
from features.ohlcv import SYMBOL_COLUMN, OHLCVValidationError, validate_ohlcv

Severity = Literal["error", "warning"]


class SanityThresholds(BaseModel):
    """Where each check starts to warn and where it makes a snapshot unusable."""

    model_config = ConfigDict(extra="forbid")

    gap_warn_days: int = Field(2, ge=1, description="Warn when more sessions than this are missing in a row.")
    gap_error_days: int = Field(10, ge=1, description="Unusable when more sessions than this are missing in a row.")
    calendar: str | None = Field(
        None, description="The exchange calendar of every symbol (e.g. XNYS); by default each symbol's own."
    )
    stale_warn_bars: int = Field(3, ge=1, description="Warn when this many bars in a row repeat the previous close.")
    stale_error_bars: int = Field(10, ge=1, description="Unusable when this many bars in a row repeat the close.")
    jump_warn_log_return: float = Field(0.15, gt=0, description="Warn above this |daily log return|.")
    jump_error_log_return: float = Field(
        0.5, gt=0, description="Unusable above this |daily log return| (a bad print or an unadjusted split)."
    )
    zero_volume_warn_fraction: float = Field(0.05, ge=0, le=1, description="Warn when more bars than this trade 0.")
    min_bars: int = Field(DEFAULT_SPEC.min_bars, ge=1, description="Unusable below this many bars per symbol.")

    @model_validator(mode="after")
    def _warn_before_error(self) -> SanityThresholds:
        pairs = (
            ("gap", self.gap_warn_days, self.gap_error_days),
            ("stale", self.stale_warn_bars, self.stale_error_bars),
            ("jump", self.jump_warn_log_return, self.jump_error_log_return),
        )
        for name, warn, error in pairs:
            if warn > error:
                raise ValueError(f"{name}: the warning threshold {warn} is above the error threshold {error}")
        return self


@dataclass(frozen=True)
class Finding:
    """One thing a check found: which check, how bad, where, and what."""

    check: str
    severity: Severity
    message: str
    symbol: str | None = None
    date: str | None = None
    value: float | None = None

    def __str__(self) -> str:
        where = ", ".join(x for x in (self.symbol, self.date) if x)
        return f"{self.severity} [{self.check}] {where + ': ' if where else ''}{self.message}"


@dataclass
class SnapshotReport:
    """Every finding on one snapshot; ``usable`` is False when any of them is an error."""

    snapshot_id: str
    symbols: list[str]
    rows: int
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def usable(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot_id,
            "symbols": self.symbols,
            "rows": self.rows,
            "usable": self.usable,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
        }

    def render(self, limit: int = 20) -> str:
        """A plain-text report: the verdict, then the errors and warnings (the first ``limit`` of each)."""
        verdict = "unusable" if self.errors else "usable"
        lines = [
            f"snapshot {self.snapshot_id} ({', '.join(self.symbols)}, {self.rows} bars) is {verdict}: "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        ]
        for group in (self.errors, self.warnings):
            lines += [f"  {f}" for f in group[:limit]]
            if len(group) > limit:
                lines.append(f"  ... and {len(group) - limit} more")
        return "\n".join(lines)


class SnapshotUnusableError(ValueError):
    """A snapshot failed its sanity checks; ``report`` holds every finding."""

    def __init__(self, report: SnapshotReport):
        self.report = report
        super().__init__(report.render())


def validate_snapshot(
    bars: pd.DataFrame, snapshot_id: str = "", thresholds: SanityThresholds | None = None
) -> SnapshotReport:
    """Check a long frame of bars (``symbol`` plus OHLCV columns) against the contract and the sanity checks."""
    limits = thresholds or SanityThresholds()
    symbols = sorted(bars[SYMBOL_COLUMN].astype(str).unique()) if SYMBOL_COLUMN in bars else []
    report = SnapshotReport(snapshot_id, symbols, len(bars))
    try:
        frame = validate_ohlcv(bars, panel=True)
    except OHLCVValidationError as error:
        report.findings += [
            Finding("ohlcv_contract", "error", v.message, v.symbol, v.date, _number(v.value)) for v in error.violations
        ]
        return report  # the other checks assume valid bars
    for symbol, group in frame.groupby(SYMBOL_COLUMN, sort=True):
        name = str(symbol)
        dates = group["date"].to_numpy(dtype="datetime64[D]")
        close = group["close"].to_numpy(dtype=float)
        if len(dates) < limits.min_bars:
            report.findings.append(
                Finding(
                    "too_few_bars",
                    "error",
                    f"{len(dates)} bars, the features alone need {limits.min_bars}",
                    name,
                    value=float(len(dates)),
                )
            )
        report.findings += _gaps(name, dates, trading_calendar(limits.calendar or calendar_name(name)), limits)
        report.findings += _stale(name, dates, close, limits)
        report.findings += _jumps(name, dates, close, limits)
        report.findings += _zero_volume(name, group["volume"].to_numpy(dtype=float), limits)
    return report


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _gaps(symbol: str, dates: np.ndarray, calendar: TradingCalendar, limits: SanityThresholds) -> list[Finding]:
    """Runs of the exchange's sessions with no bar."""
    if len(dates) < 2:
        return []
    missing = calendar.sessions_between(dates[:-1], dates[1:])
    findings = []
    for i in np.flatnonzero(missing > limits.gap_warn_days):
        days = int(missing[i])
        severity: Severity = "error" if days > limits.gap_error_days else "warning"
        findings.append(
            Finding(
                "gap",
                severity,
                f"{days} {calendar.name} sessions without a bar between {dates[i]} and {dates[i + 1]}",
                symbol,
                str(dates[i + 1]),
                float(days),
            )
        )
    return findings


def _stale(symbol: str, dates: np.ndarray, close: np.ndarray, limits: SanityThresholds) -> list[Finding]:
    """Runs of bars whose close repeats the previous close (a feed that stopped updating)."""
    repeats = np.concatenate(([False], close[1:] == close[:-1], [False]))  # bar k repeats bar k - 1
    edges = np.flatnonzero(np.diff(repeats.astype(np.int8)))
    findings = []
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        length = int(stop - start)
        if length < limits.stale_warn_bars:
            continue
        severity: Severity = "error" if length >= limits.stale_error_bars else "warning"
        findings.append(
            Finding(
                "stale_price",
                severity,
                f"close {close[start]:g} repeated by {length} bars in a row ({dates[start + 1]}..{dates[stop]})",
                symbol,
                str(dates[start + 1]),
                float(length),
            )
        )
    return findings


def _jumps(symbol: str, dates: np.ndarray, close: np.ndarray, limits: SanityThresholds) -> list[Finding]:
    """Daily log returns too large to be believed without a look (bad prints, unadjusted splits)."""
    moves = np.diff(np.log(close))
    findings = []
    for i in np.flatnonzero(np.abs(moves) > limits.jump_warn_log_return):
        move = float(moves[i])
        severity: Severity = "error" if abs(move) > limits.jump_error_log_return else "warning"
        findings.append(
            Finding(
                "jump",
                severity,
                f"daily log return {move:+.3f} ({np.expm1(move):+.1%}) from {dates[i]} to {dates[i + 1]}",
                symbol,
                str(dates[i + 1]),
                move,
            )
        )
    return findings


def _zero_volume(symbol: str, volume: np.ndarray, limits: SanityThresholds) -> list[Finding]:
    fraction = float(np.mean(volume == 0)) if volume.size else 0.0
    if fraction <= limits.zero_volume_warn_fraction:
        return []
    return [
        Finding(
            "zero_volume",
            "warning",
            f"{fraction:.1%} of bars have zero volume: the volume features carry little information",
            symbol,
            value=fraction,
        )
    ]
