"""``price_prophet``'s forecast metrics: MAPE over all rows and at the headline horizons, interval coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.evaluation.metrics import mape


def headline_horizons(forecast_days: int) -> list[int]:
    """The horizons the metrics name (``mape_h1``, ``mape_h5``, ``mape_h<N>``), within 1..N."""
    return sorted({h for h in (1, 5, forecast_days) if 1 <= h <= forecast_days})


def forecast_metrics(frame: pd.DataFrame, column: str, horizons: list[int], coverage: bool) -> dict[str, float]:
    """MAPE (in percent) of ``column`` against ``actual`` over all rows and at each headline horizon.

    ``coverage`` adds the fraction of actuals inside [lower, upper], over the rows with both bounds. Empty selections
    give NaN.
    """
    actual = frame["actual"].to_numpy(dtype=float)
    forecast = frame[column].to_numpy(dtype=float)
    horizon = frame["horizon"].to_numpy()

    def error(mask: np.ndarray) -> float:
        return mape(actual[mask], forecast[mask]) if mask.any() else float("nan")

    metrics: dict[str, float] = {"mape": error(np.ones(actual.shape[0], dtype=bool))}
    for h in horizons:
        metrics[f"mape_h{h}"] = error(horizon == h)
    if coverage:  # over the forecasts with an interval (a short history's first test year may have none)
        lower, upper = frame["lower"].to_numpy(dtype=float), frame["upper"].to_numpy(dtype=float)
        known = np.isfinite(lower) & np.isfinite(upper)
        inside = (actual[known] >= lower[known]) & (actual[known] <= upper[known])
        metrics["coverage"] = float(inside.mean()) if inside.size else float("nan")
    metrics["n"] = int(actual.shape[0])
    return metrics


def per_horizon(frame: pd.DataFrame, column: str, coverage: bool) -> dict[int, dict[str, float]]:
    """:func:`forecast_metrics` of each horizon present in ``frame``."""
    horizon = frame["horizon"].to_numpy(dtype=int)
    return {int(h): forecast_metrics(frame[horizon == h], column, [], coverage=coverage) for h in np.unique(horizon)}
