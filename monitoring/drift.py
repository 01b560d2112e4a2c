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

numpy only: computed from stored bin edges, not from the training data (which the monitor does not have); Evidently's
PSI needs the reference sample itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from training.evaluation.drift_reference import Reference, shares

WARN = 0.1
ALERT = 0.25
#: Smallest share a bin counts with in the PSI (an empty bin would make it infinite).
FLOOR = 1e-4
LEVELS = ("ok", "warn", "alert")


def psi(ref: Reference, values: Any) -> float:
    """The population stability index of ``values`` against ``ref``."""
    expected = np.maximum(np.asarray(ref.shares), FLOOR)
    actual = np.maximum(shares(values, ref.edges), FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def level(value: float, warn: float = WARN, alert: float = ALERT) -> str:
    """ "ok", "warn" or "alert" for a PSI value."""
    if not warn <= alert:
        raise ValueError(f"the warn threshold {warn} must not exceed the alert threshold {alert}")
    return "alert" if value >= alert else "warn" if value >= warn else "ok"


def persistent(levels: Sequence[str], days: int) -> bool:
    """Whether the last ``days`` daily levels (oldest first) were all alerts."""
    if days < 1:
        raise ValueError("days must be at least 1")
    return len(levels) >= days and all(item == "alert" for item in levels[-days:])
