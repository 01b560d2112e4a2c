"""Out-of-sample metrics, each defined so that the baseline comparison is explicit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score


def finite_value(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a bool), else None: a metric read from a card or a dict."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _finite(*arrays: np.ndarray) -> np.ndarray:
    mask = np.ones(arrays[0].shape[0], dtype=bool)
    for a in arrays:
        mask &= np.isfinite(a)
    return mask


def r2_oos(y: np.ndarray, prediction: np.ndarray, benchmark: np.ndarray) -> float:
    """Out-of-sample R² against a benchmark forecast: 1 - SSE(model) / SSE(benchmark)."""
    return float(1.0 - np.sum((y - prediction) ** 2) / np.sum((y - benchmark) ** 2))


def regression_metrics(y: np.ndarray, prediction: np.ndarray, historical_mean: np.ndarray) -> dict[str, float]:
    """Return-model metrics: R² vs zero and vs the historical mean, hit rate of the sign, MSE, correlation."""
    m = _finite(y, prediction, historical_mean)
    y, p, mean = y[m], prediction[m], historical_mean[m]
    return {
        "r2_vs_zero": r2_oos(y, p, np.zeros_like(y)),
        "r2_vs_mean": r2_oos(y, p, mean),
        "hit_rate": float(np.mean(np.sign(p) == np.sign(y))),
        "mse": float(np.mean((y - p) ** 2)),
        "correlation": float(np.corrcoef(y, p)[0, 1]) if np.std(p) > 0 else 0.0,
        "n": int(m.sum()),
    }


def classification_metrics(y: np.ndarray, probability: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Direction metrics: accuracy at the threshold, AUC, Brier score and log loss of P(up)."""
    m = _finite(y, probability)
    y, p = y[m].astype(int), np.clip(probability[m], 1e-6, 1 - 1e-6)
    auc = float(roc_auc_score(y, p)) if np.unique(p).size > 1 and np.unique(y).size > 1 else 0.5
    return {
        "accuracy": float(np.mean((p >= threshold).astype(int) == y)),
        "auc": auc,
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "up_rate": float(np.mean(y)),
        "n": int(m.sum()),
    }


@dataclass(frozen=True)
class SameRows:
    """The rows every forecast is scored on, and how many were dropped for each reason (a row may have several)."""

    mask: np.ndarray
    dropped: dict[str, int]

    @property
    def n(self) -> int:
        return int(self.mask.sum())

    @property
    def n_dropped(self) -> int:
        return int(self.mask.size - self.mask.sum())

    def describe(self) -> dict[str, Any]:
        """For reports and cards: rows scored, rows dropped, and why."""
        return {"n": self.n, "dropped": self.n_dropped, "why": dict(self.dropped)}


def same_rows(actual: np.ndarray, forecasts: Mapping[str, np.ndarray], positive: bool = False) -> SameRows:
    """Rows where the actual and every forecast are finite (and > 0 when ``positive``): the rows all are scored on.

    Scoring each forecast on its own finite rows would compare a model and its baselines on different days.
    """
    requirement = "finite and > 0" if positive else "finite"
    mask = np.ones(actual.shape[0], dtype=bool)
    dropped: dict[str, int] = {}
    for name, values in {"actual": actual, **forecasts}.items():
        usable = np.isfinite(values)
        if positive:
            usable &= np.where(usable, values, 0.0) > 0
        if not usable.all():
            what = "the actual" if name == "actual" else f"the {name} forecast"
            dropped[f"{what} is not {requirement}"] = int((~usable).sum())
        mask &= usable
    return SameRows(mask, dropped)


@dataclass(frozen=True)
class VolatilityScores:
    """Each forecast's volatility metrics, all on the same rows; ``rows`` says how many were dropped and why."""

    metrics: dict[str, dict[str, float]]
    rows: SameRows


def volatility_metrics(realized: np.ndarray, forecasts: Mapping[str, np.ndarray]) -> VolatilityScores:
    """MSE and MAE of annualised vol, QLIKE of the implied variance and correlation of every forecast (the model's
    and its baselines'), on the rows where the realized volatility and every forecast are finite and > 0.

    Every forecast's metrics carry ``n`` (rows scored, the same for all) and ``n_dropped``.
    """
    rows = same_rows(realized, forecasts, positive=True)
    r = realized[rows.mask]
    metrics = {}
    for name, forecast in forecasts.items():
        f = forecast[rows.mask]
        rv, fv = r**2, f**2
        metrics[name] = {
            "mse": float(np.mean((r - f) ** 2)) if r.size else float("nan"),
            "qlike": float(np.mean(rv / fv - np.log(rv / fv) - 1.0)) if r.size else float("nan"),
            "correlation": float(np.corrcoef(r, f)[0, 1]) if r.size > 1 and np.std(f) > 0 else float("nan"),
            "mae": float(np.mean(np.abs(r - f))) if r.size else float("nan"),
            "n": rows.n,
            "n_dropped": rows.n_dropped,
        }
    return VolatilityScores(metrics, rows)


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    m = _finite(actual, forecast)
    return float(np.mean(np.abs(forecast[m] / actual[m] - 1.0)) * 100.0)
