"""The drift reference a card stores at training: bins of every feature and of the model's predictions.

Each reference is the inner edges of ``bins`` equal-count bins of the training values (their quantiles; tied
quantiles merge bins) and the share of the values in each bin, the outer bins open-ended. The monitor
(``monitoring/drift.py``) bins recent values on the same edges and computes the population stability index; it never
needs the training data itself.

What the references are taken from:

* features: every row of the training panel (the final fit's rows, before any ``max_training_rows`` sample);
* predictions: the walk-forward's out-of-sample predictions, what the model says on data it has not seen, as it
  will live. By task: the prediction itself (return, P(up), volatility); for Prophet the forecast log return
  ``log(forecast / last close)`` over every horizon (a price's level says nothing across symbols and years); for the
  regime HMM the regime served out of sample (state index; one bin per state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_BINS = 10


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


def finite(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def shares(values: Any, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Share of the finite ``values`` in each bin of ``edges`` (a value on an edge belongs to the bin above it)."""
    kept = finite(values)
    if kept.size == 0:
        raise ValueError("no finite values to bin")
    bins = np.searchsorted(np.asarray(edges, dtype=float), kept, side="right")
    return np.bincount(bins, minlength=len(edges) + 1) / kept.size


def reference(values: Any, bins: int = DEFAULT_BINS, edges: Sequence[float] | None = None) -> Reference:
    """The reference of training values: ``bins`` equal-count bins (fewer when quantiles tie), or the given
    ``edges`` (for categories)."""
    kept = finite(values)
    if kept.size == 0:
        raise ValueError("no finite values to build a drift reference from")
    inner = np.unique(np.quantile(kept, np.arange(1, bins) / bins)) if edges is None else np.asarray(edges, float)
    return Reference(tuple(inner.tolist()), tuple(shares(kept, inner).tolist()), int(kept.size))


def prediction_values(task: str, predictions: pd.DataFrame) -> tuple[str, np.ndarray]:
    """What a model's prediction reference is taken from (a description and the values), by task."""
    if task == "price_forecast":
        forecast = predictions["prediction"].to_numpy(float) / predictions["baseline_random_walk"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return "forecast log return, log(forecast / last close), every horizon", np.log(forecast)
    if task == "regime_detection":
        return "regime served out of sample (state index)", predictions["served_out_of_sample"].to_numpy(float)
    return "walk-forward prediction", predictions["prediction"].to_numpy(float)


def drift_references(
    task: str,
    features: np.ndarray,
    feature_names: Sequence[str],
    predictions: pd.DataFrame,
    n_states: int | None = None,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The card's ``drift_reference``: every feature's and the predictions' reference."""
    what, values = prediction_values(task, predictions)
    if task == "regime_detection":
        values = values[values >= 0]  # rows in no test year
        states = n_states or int(values.max()) + 1
        prediction = reference(values, edges=[state + 0.5 for state in range(states - 1)])
    else:
        prediction = reference(values, bins)
    columns = {}
    for i, name in enumerate(feature_names):
        column = features[:, i]
        if np.isfinite(column).any():
            columns[name] = reference(column, bins).to_dict()
    return {
        "bins": bins,
        "features_from": f"the {features.shape[0]:,} rows of the training panel",
        "features": columns,
        "predictions_from": what,
        "predictions": prediction.to_dict(),
    }
