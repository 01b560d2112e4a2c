"""Population stability index (PSI) of a feature or a model's predictions against its training reference.

At training, each card stores a :class:`Reference` per feature and for the predictions: the inner edges of
``bins`` equal-count bins of the training values (their quantiles; ties merge bins) and the share of training values
in each bin, the outer bins open-ended. The monitor bins recent values on the same edges and compares the shares:

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
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_BINS = 10
WARN = 0.1
ALERT = 0.25
#: Smallest share a bin counts with in the PSI (an empty bin would make it infinite).
FLOOR = 1e-4
LEVELS = ("ok", "warn", "alert")


@dataclass(frozen=True)
class Reference:
    """Bins of the training values: ``edges`` (ascending inner edges), ``shares`` (one more than the edges)."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]
    count: int

    def __post_init__(self) -> None:
        if len(self.shares) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} inner edges need {len(self.edges) + 1} shares, got {len(self.shares)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("reference edges must be strictly ascending")

    def to_dict(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "shares": list(self.shares), "count": self.count}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        return cls(tuple(float(e) for e in data["edges"]), tuple(float(s) for s in data["shares"]), int(data["count"]))


def _finite(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def shares(values: Any, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Share of the finite ``values`` in each bin of ``edges`` (a value on an edge belongs to the bin above it)."""
    finite = _finite(values)
    if finite.size == 0:
        raise ValueError("no finite values to bin")
    bins = np.searchsorted(np.asarray(edges, dtype=float), finite, side="right")
    return np.bincount(bins, minlength=len(edges) + 1) / finite.size


def reference(values: Any, bins: int = DEFAULT_BINS) -> Reference:
    """The reference of training values: ``bins`` equal-count bins (fewer when quantiles tie)."""
    finite = _finite(values)
    if finite.size == 0:
        raise ValueError("no finite values to build a drift reference from")
    edges = np.unique(np.quantile(finite, np.arange(1, bins) / bins))
    return Reference(tuple(edges.tolist()), tuple(shares(finite, edges).tolist()), int(finite.size))


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
