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

from training.dataset import rows_by_symbol

DEFAULT_BINS = 10
#: Smallest share a bin counts with in a PSI (an empty bin would make it infinite); not renormalised.
FLOOR = 1e-4
#: The outer bins are split again at these quantiles (0.5 % and 99.5 %): values beyond what training saw weigh heavily.
TAILS = 0.005
#: Window lengths (rows of one symbol, i.e. trading days) whose PSI within the training period the reference records.
CALIBRATION_DAYS = (21, 63, 126, 252)
CALIBRATION_STEP = 5
CALIBRATION_SYMBOLS = 50
#: Features that are functions of the date alone (their "drift" is the season): no drift reference.
CALENDAR_FEATURES = frozenset({"day_of_week", "month_sin", "month_cos"})


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


def psi_of(expected: Any, actual: Any) -> Any:
    """PSI = sum over bins of (a - e) ln(a / e), both shares floored at :data:`FLOOR`; ``actual`` may hold one row of
    shares per window (a PSI each)."""
    e = np.maximum(np.asarray(expected, dtype=float), FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), FLOOR)
    return np.sum((a - e) * np.log(a / e), axis=-1)


def reference(
    values: Any, bins: int = DEFAULT_BINS, edges: Sequence[float] | None = None, tails: float = 0.0
) -> Reference:
    """The reference of training values: ``bins`` equal-count bins (fewer when quantiles tie), the outer two split
    again at the ``tails`` and ``1 - tails`` quantiles when ``tails`` > 0; or the given ``edges`` (categories)."""
    kept = finite(values)
    if kept.size == 0:
        raise ValueError("no finite values to build a drift reference from")
    levels = np.arange(1, bins) / bins
    if tails > 0:
        levels = np.concatenate(([tails], levels, [1 - tails]))
    inner = np.unique(np.quantile(kept, levels)) if edges is None else np.asarray(edges, float)
    return Reference(tuple(inner.tolist()), tuple(shares(kept, inner).tolist()), int(kept.size))


def calibration_rows(
    dates: np.ndarray, symbols: np.ndarray, max_symbols: int = CALIBRATION_SYMBOLS
) -> list[np.ndarray]:
    """The rows whose windows calibrate a reference: each symbol's row indices in date order, for at most
    ``max_symbols`` symbols (chosen by a fixed seed). Found once per set of rows, shared by every feature."""
    groups = rows_by_symbol(np.asarray(symbols))
    names = np.asarray(sorted(groups))
    if names.size > max_symbols:
        names = np.random.default_rng(0).choice(names, max_symbols, replace=False)
    return [groups[name][np.argsort(dates[groups[name]], kind="stable")] for name in names]


def window_psi_quantiles(
    values: np.ndarray,
    rows: Sequence[np.ndarray],
    ref: Reference,
    windows: Sequence[int] = CALIBRATION_DAYS,
    step: int = CALIBRATION_STEP,
) -> dict[str, list[float]]:
    """The 95th and 99th percentiles of the PSI of one symbol's ``w`` consecutive training values against ``ref``,
    for each window length ``w`` (every ``step`` values; ``rows``: each symbol's rows in date order,
    :func:`calibration_rows`): how far a window of the training period itself strays from the whole, which the
    monitor's alert must exceed."""
    edges = np.asarray(ref.edges, dtype=float)
    found: dict[int, list[np.ndarray]] = {w: [] for w in windows}
    one_hot = np.eye(edges.size + 1)
    for symbol_rows in rows:
        mine = values[symbol_rows]
        bins = np.searchsorted(edges, mine[np.isfinite(mine)], side="right")
        counts = np.zeros((bins.size + 1, edges.size + 1))
        counts[1:] = np.cumsum(one_hot[bins], axis=0)
        for w in windows:
            if bins.size < w:
                continue
            starts = np.arange(0, bins.size - w + 1, step)
            found[w].append(psi_of(ref.shares, (counts[starts + w] - counts[starts]) / w))
    return {str(w): np.quantile(np.concatenate(v), [0.95, 0.99]).tolist() for w, v in found.items() if v}


def prediction_values(task: str, predictions: pd.DataFrame) -> tuple[str, np.ndarray]:
    """What a model's prediction reference is taken from (a description and the values), by task."""
    if task == "price_forecast":
        forecast = predictions["prediction"].to_numpy(float) / predictions["baseline_random_walk"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return "forecast log return, log(forecast / last close), every horizon", np.log(forecast)
    if task == "regime_detection":
        return "regime served out of sample (state index)", predictions["served_out_of_sample"].to_numpy(float)
    return "walk-forward prediction", predictions["prediction"].to_numpy(float)


def feature_references(
    features: np.ndarray,
    feature_names: Sequence[str],
    dates: np.ndarray | None = None,
    symbols: np.ndarray | None = None,
    bins: int = DEFAULT_BINS,
) -> dict[str, Any]:
    """The features' part of a card's ``drift_reference``: every feature's reference, with the PSI its training
    windows reached (``calibration``: window length -> [95th, 99th percentile]) when the rows' ``dates`` and
    ``symbols`` are given; calendar features have none. The same for every model of a panel: computed once
    (``training.run.panel_feature_references``)."""
    rows = calibration_rows(dates, symbols) if dates is not None and symbols is not None else None
    columns = {}
    for i, name in enumerate(feature_names):
        column = features[:, i]
        if name in CALENDAR_FEATURES or not np.isfinite(column).any():
            continue
        ref = reference(column, bins, tails=TAILS)
        columns[name] = ref.to_dict()
        if rows is not None:
            columns[name]["calibration"] = window_psi_quantiles(column, rows, ref)
    return {
        "bins": bins,
        "tails": TAILS,
        "features_from": f"the {features.shape[0]:,} rows of the training panel",
        "features": columns,
        "calendar_features": sorted(CALENDAR_FEATURES & set(feature_names)),
    }


def drift_references(
    task: str, features: dict[str, Any], predictions: pd.DataFrame, n_states: int | None = None
) -> dict[str, Any]:
    """The card's ``drift_reference``: the panel's :func:`feature_references` and the predictions' reference, with
    the PSI their own windows reached where they have dates and symbols (not Prophet's, whose rows are horizons)."""
    what, values = prediction_values(task, predictions)
    if task == "regime_detection":
        kept = values >= 0  # rows in no test year
        states = n_states or int(values[kept].max()) + 1
        ref = reference(values[kept], edges=[state + 0.5 for state in range(states - 1)])
        values = np.where(kept, values, np.nan)  # out of the calibration's windows too
    else:
        ref = reference(values, features["bins"], tails=TAILS)
    prediction = ref.to_dict()
    # regimes last weeks: a month of served regimes is far from their long-run mix, and so were the folds' own months
    if task != "price_forecast" and {"date", "symbol"} <= set(predictions.columns):
        rows = calibration_rows(predictions["date"].to_numpy(), predictions["symbol"].to_numpy())
        prediction["calibration"] = window_psi_quantiles(values, rows, ref)
    return features | {"predictions_from": what, "predictions": prediction}
