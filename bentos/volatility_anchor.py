"""Serving side of ``volatility_lightgbm``: the baseline its booster corrects, and its card entry.

The booster does not forecast the level of volatility; it learns the correction to a baseline forecast read from
the feature row, the geometric mean of the 5-, 21- and 63-day realised volatilities (a fixed HAR-style blend of the
day's recent volatility, with no parameter to fit). Trained with that baseline's log as LightGBM's initial score
under the gamma loss (log link), the forecast is

    volatility = exp(booster raw score + log anchor),   log anchor = mean(log max(rv_w, FLOOR) for w in 5, 21, 63)

so a booster that has learnt little (a short history, a few hundred rows) stays near the baseline instead of
collapsing to a constant. Measured on the embedded indices with every fold trained on its last year only
(``benchmarks/results/short_history.md``): the level model's MSE was 0.00523 against EWMA's 0.00413, the
corrected model's 0.00369.

One implementation for training and serving (the trainer fits and predicts with it, the service's
``VolatilityRunner`` reads the card and applies it). numpy only: the service imports it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

METHOD = "correction to the geometric mean of rv_5, rv_21 and rv_63 (LightGBM initial score, log link)"
FEATURES = ("rv_5", "rv_21", "rv_63")
#: Volatilities are floored here before their log is taken (a flat window has zero realised volatility).
FLOOR = 1e-4


def log_anchor(features: np.ndarray, names: Sequence[str], columns: Sequence[str] = FEATURES) -> np.ndarray:
    """The log of the baseline forecast of each feature row (rows x features, columns named by ``names``)."""
    try:
        index = [list(names).index(column) for column in columns]
    except ValueError:
        raise ValueError(f"the volatility anchor needs the features {', '.join(columns)}") from None
    values = np.atleast_2d(np.asarray(features, dtype=float))[:, index]
    return np.asarray(np.log(np.maximum(values, FLOOR)).mean(axis=1))


def card() -> dict[str, Any]:
    """The card's ``details["anchor"]``: what the service needs to apply the same anchor."""
    return {"method": METHOD, "features": list(FEATURES), "floor": FLOOR, "combination": "geometric_mean"}


def from_card(details: Mapping[str, Any]) -> tuple[str, ...]:
    """The anchor's feature columns from a card's ``details``; a ValueError when it has no anchor this code applies."""
    anchor = details.get("anchor") if isinstance(details, Mapping) else None
    if not isinstance(anchor, Mapping):
        raise ValueError("no anchor: the model forecasts the level of volatility, which this code no longer serves")
    if anchor.get("combination") != "geometric_mean" or float(anchor.get("floor", -1)) != FLOOR:
        raise ValueError(f"an anchor this code does not apply: {dict(anchor)}")
    return tuple(str(column) for column in anchor.get("features", ()))
