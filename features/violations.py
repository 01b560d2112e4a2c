"""What a broken rule of the OHLCV contract looks like: the rules' names, one violation, the error listing them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: How many violations an error message lists before it summarises the rest.
MAX_LISTED_VIOLATIONS = 20


class Rule:
    """Names of the rules of the contract, as they appear in violations."""

    MISSING_COLUMN = "missing_column"
    TOO_FEW_BARS = "too_few_bars"
    NOT_NUMERIC = "not_numeric"
    NOT_FINITE = "not_finite"
    PRICE_NOT_POSITIVE = "price_not_positive"
    VOLUME_NEGATIVE = "volume_negative"
    HIGH_BELOW_OPEN_CLOSE = "high_below_open_close"
    LOW_ABOVE_OPEN_CLOSE = "low_above_open_close"
    DATE_INVALID = "date_invalid"
    DATE_OUT_OF_RANGE = "date_out_of_range"
    DATE_DUPLICATE = "date_duplicate"
    DATE_UNSORTED = "date_unsorted"
    LENGTH_MISMATCH = "length_mismatch"


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (row, date, column, symbol), which rule, and the offending value."""

    rule: str
    message: str
    row: int | None = None
    column: str | None = None
    date: str | None = None
    symbol: str | None = None
    value: Any = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.symbol is not None:
            where.append(f"symbol {self.symbol}")
        if self.date is not None:
            where.append(f"date {self.date}")
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{prefix}{self.message} [{self.rule}]"

    def to_dict(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and not np.isfinite(value):
            value = str(value)
        return {
            "rule": self.rule,
            "message": self.message,
            "row": self.row,
            "column": self.column,
            "date": self.date,
            "symbol": self.symbol,
            "value": value,
        }


class OHLCVValidationError(ValueError):
    """Raised when bars break the OHLCV contract; ``violations`` holds every broken rule."""

    def __init__(self, violations: Sequence[Violation]):
        self.violations = list(violations)
        listed = "\n  ".join(str(v) for v in self.violations[:MAX_LISTED_VIOLATIONS])
        more = len(self.violations) - MAX_LISTED_VIOLATIONS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        super().__init__(f"{len(self.violations)} OHLCV violation(s):\n  {listed}{tail}")
