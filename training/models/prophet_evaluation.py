"""``price_prophet``'s walk-forward, pooled: every symbol's forecasts by test year, their intervals calibrated on the
years before (``bentos/prophet_intervals.py``), the metrics against the random walk, and the served calibration."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bentos.prophet_intervals import LEVEL, ConformalInterval, scores
from training.evaluation.walk_forward import Evaluation
from training.models.prophet_metrics import forecast_metrics, headline_horizons, per_horizon
from training.models.trainer import Trainer

#: Fewest bars a symbol needs before a test year (two years, so the yearly seasonality is identified).
MIN_TRAIN_BARS = 500

PREDICTION_COLUMNS = (
    "date",
    "symbol",
    "fold",
    "horizon",
    "target_date",
    "actual",
    "prediction",
    "lower",
    "upper",
    "volatility",
    "baseline_random_walk",
)


Period = tuple[np.datetime64, np.datetime64]


@dataclass
class SymbolEvaluation:
    """One symbol's walk-forward results: per fold its training date range, rows and forecast records."""

    folds: dict[int, tuple[tuple[np.datetime64, np.datetime64], int, list[pd.DataFrame]]] = field(default_factory=dict)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    forecast_seconds: list[float] = field(default_factory=list)


def pooled_evaluation(
    trainer: Trainer, periods: list[Period], symbols: dict[str, SymbolEvaluation]
) -> tuple[Evaluation, ConformalInterval]:
    """The pooled evaluation of every symbol's results (test folds in order, symbols sorted within a fold), each
    test year's intervals calibrated on the years before it; and the intervals of every year, to serve. ``periods``:
    the calibration year, then the test years."""
    days, step = trainer.config.prophet_forecast_days, trainer.config.prophet_origin_step
    horizons = headline_horizons(days)
    by_fold: dict[int, tuple[list[tuple[Period, int, list[pd.DataFrame]]], pd.DataFrame]] = {}
    for fold in range(len(periods)):
        fitted = [symbols[s].folds[fold] for s in sorted(symbols) if fold in symbols[s].folds]
        frames = [frame for _, _, fold_frames in fitted for frame in fold_frames]
        if frames:
            by_fold[fold] = (fitted, pd.concat(frames, ignore_index=True))
    skipped = [  # test folds numbered from 0, as the tabular models' are; the calibration year's apart
        {**s, "fold": s["fold"] - 1}
        for fold in range(1, len(periods))
        for symbol in sorted(symbols)
        for s in symbols[symbol].skipped
        if s["fold"] == fold
    ]
    records: list[pd.DataFrame] = []
    folds: list[dict[str, Any]] = []
    for fold, (start, end) in enumerate(periods):
        if fold == 0 or fold not in by_fold:
            continue
        fitted, fold_frame = by_fold[fold]
        earlier = [frame for k, (_, frame) in by_fold.items() if k < fold]
        fold_frame, calibrated_on = with_intervals(fold_frame, pd.concat(earlier) if earlier else None)
        fold_frame["fold"] = fold - 1
        records.append(fold_frame)
        folds.append(
            {
                "fold": fold - 1,
                "train_start": str(min(r[0] for r, _, _ in fitted)),
                "train_end": str(max(r[1] for r, _, _ in fitted)),
                "test_start": str(start),
                "test_end": str(end - np.timedelta64(1, "D")),
                "n_train": sum(n for _, n, _ in fitted),
                "n_test": len(fold_frame),
                "intervals_calibrated_on": calibrated_on,
                "metrics": forecast_metrics(fold_frame, "prediction", horizons, coverage=True),
                "baselines": {
                    "random_walk": forecast_metrics(fold_frame, "baseline_random_walk", horizons, coverage=False)
                },
            }
        )
    if not records:
        raise ValueError(
            f"no symbol has {MIN_TRAIN_BARS} bars before any of the last {trainer.config.test_years} test years"
        )
    intervals = ConformalInterval.calibrate(forecast_scores(pd.concat([f for _, f in by_fold.values()])))
    fit_seconds = [x for s in sorted(symbols) for x in symbols[s].fit_seconds]
    forecast_seconds = [x for s in sorted(symbols) for x in symbols[s].forecast_seconds]
    predictions = pd.concat(records, ignore_index=True)[list(PREDICTION_COLUMNS)]
    model_by_horizon = per_horizon(predictions, "prediction", coverage=True)
    walk_by_horizon = per_horizon(predictions, "baseline_random_walk", coverage=False)
    evaluation = Evaluation(
        model=trainer.name,
        task=trainer.task,
        primary_metric=trainer.primary_metric,
        higher_is_better=trainer.higher_is_better,
        metrics=forecast_metrics(predictions, "prediction", horizons, coverage=True),
        baselines={"random_walk": forecast_metrics(predictions, "baseline_random_walk", horizons, coverage=False)},
        folds=folds,
        predictions=predictions,
        extras={
            "mape_by_horizon": {
                "model": {h: m["mape"] for h, m in model_by_horizon.items()},
                "random_walk": {h: m["mape"] for h, m in walk_by_horizon.items()},
            },
            "coverage_by_horizon": {h: m["coverage"] for h, m in model_by_horizon.items()},
            "interval_level": LEVEL,
            "intervals": intervals.card(),
            "calibration_year": str(periods[0][0])[:4],
            "forecast_days": days,
            "origin_step": step,
            "skipped": skipped,
            "timing": {
                "fits": len(fit_seconds),
                "fit_seconds_total": float(np.sum(fit_seconds)),
                "forecasts": len(forecast_seconds),
                "forecast_ms_median": float(np.median(forecast_seconds) * 1000.0),
            },
        },
    )
    return evaluation, intervals


def forecast_scores(frame: pd.DataFrame) -> np.ndarray:
    """The conformal scores of walk-forward forecasts (``bentos/prophet_intervals.py``)."""
    return scores(
        frame["actual"].to_numpy(dtype=float),
        frame["prediction"].to_numpy(dtype=float),
        frame["volatility"].to_numpy(dtype=float),
        frame["horizon"].to_numpy(dtype=float),
    )


def with_intervals(frame: pd.DataFrame, calibration: pd.DataFrame | None) -> tuple[pd.DataFrame, int]:
    """``frame`` with the bounds of the intervals calibrated on ``calibration``'s forecasts, and how many scores
    that was; without enough of them (a short history's first test year), no bounds (NaN) and 0."""
    try:
        intervals = ConformalInterval.calibrate(
            forecast_scores(calibration) if calibration is not None else np.empty(0)
        )
    except ValueError:
        return frame.assign(lower=np.nan, upper=np.nan), 0
    price = frame["prediction"].to_numpy(dtype=float)
    lower, upper = intervals.bounds(price, frame["volatility"].to_numpy(dtype=float), frame["horizon"].to_numpy())
    return frame.assign(lower=lower, upper=upper), intervals.scores
