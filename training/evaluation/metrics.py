"""Out-of-sample metrics, each defined so that the baseline comparison is explicit."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score


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


def volatility_metrics(realized: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """Volatility metrics: MSE and MAE of annualised vol, QLIKE of the implied variance, correlation."""
    m = _finite(realized, forecast) & (forecast > 0) & (realized > 0)
    r, f = realized[m], forecast[m]
    rv, fv = r**2, f**2
    return {
        "mse": float(np.mean((r - f) ** 2)),
        "qlike": float(np.mean(rv / fv - np.log(rv / fv) - 1.0)),
        "correlation": float(np.corrcoef(r, f)[0, 1]),
        "mae": float(np.mean(np.abs(r - f))),
        "n": int(m.sum()),
    }


def mape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    m = _finite(actual, forecast)
    return float(np.mean(np.abs(forecast[m] / actual[m] - 1.0)) * 100.0)
