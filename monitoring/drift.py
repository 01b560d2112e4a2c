"""Population stability index (PSI) of a feature or a model's predictions against its training reference.

At training, each card stores a reference per feature and for the predictions
(``training/evaluation/drift_reference.py``: the inner edges of equal-count bins of the training values and the share
of them in each bin). The monitor bins recent values on the same edges and compares the shares:

    PSI = sum over bins of (a - e) x ln(a / e)

with ``e`` the reference share and ``a`` the recent one, both floored at ``FLOOR`` so that an empty bin gives a
large finite PSI instead of infinity (the usual practice; the floor is not renormalised). The conventional reading,
and the defaults: below 0.1 stable, 0.1 to 0.25 a moderate shift (warn), 0.25 and above a significant shift (alert).
An alert is acted on only when it persists: ``persistent`` holds when the last ``days`` daily levels were all
alerts.

Daily market features are serially correlated and their distribution moves with volatility regimes, so a window of
recent days strays from the whole training period even when nothing is wrong: measured on the embedded indices,
the median feature's PSI over 63-day windows *inside* the training period was 1.3, and 95 % of days were
"alerts" at 0.25. A card (version 6) therefore also records how far windows of the training period strayed
(``calibration``: the 95th and 99th percentile of their PSI, per window length), and :func:`thresholds` raises
the warn and alert levels to them: an alert then says "further from the training data than any but 1 % of its own
windows of this length", which a shift beyond what training saw reaches (the tail bins at 0.5 % and 99.5 % weigh
values beyond the training range heavily). Without a calibration (cards before version 6) the levels are the plain
0.1 and 0.25.

numpy only: computed from stored bin edges, not from the training data (which the monitor does not have); Evidently's
PSI needs the reference sample itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from training.evaluation.drift_reference import FLOOR, Reference, psi_of, shares

WARN = 0.1
ALERT = 0.25
LEVELS = ("ok", "warn", "alert")
__all__ = ["ALERT", "FLOOR", "LEVELS", "WARN", "level", "persistent", "psi"]


def psi(ref: Reference, values: Any) -> float:
    """The population stability index of ``values`` against ``ref``."""
    return float(psi_of(ref.shares, shares(values, ref.edges)))


def level(value: float, warn: float = WARN, alert: float = ALERT) -> str:
    """ "ok", "warn" or "alert" for a PSI value."""
    if not warn <= alert:
        raise ValueError(f"the warn threshold {warn} must not exceed the alert threshold {alert}")
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


def thresholds(
    calibration: dict[str, Any] | None, days: int, warn: float = WARN, alert: float = ALERT
) -> tuple[float, float]:
    """The (warn, alert) levels of a PSI over ``days`` days: the plain ones, raised to the 95th and 99th percentile
    the training windows reached, of the longest calibrated window not longer than ``days`` (the shortest when
    every one is longer)."""
    if not calibration:
        return warn, alert
    lengths = sorted(int(w) for w in calibration)
    chosen = max((w for w in lengths if w <= days), default=lengths[0])
    p95, p99 = calibration[str(chosen)]
    return max(warn, float(p95)), max(alert, float(p99))


def persistent(levels: Sequence[str], days: int) -> bool:
    """Whether the last ``days`` daily levels (oldest first) were all alerts."""
    if days < 1:
        raise ValueError("days must be at least 1")
    return len(levels) >= days and all(item == "alert" for item in levels[-days:])
