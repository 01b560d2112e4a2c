"""``price_prophet``: one Prophet model of log close per symbol, anchored to the last close, against the random walk.

Prophet fits a smooth trend plus weekly and yearly seasonality (and a ``log_volume`` regressor) to the log close.
Forecasts apply only Prophet's predicted change since the anchor bar to that bar's close (see
``bentos/prophet_model.py``); unanchored, the smooth curve's offset from the last close makes Prophet several
times worse than the random walk. Anchored, it is expected to be about as good as the random walk, not better.

Walk-forward: for each of the last ``test_years`` calendar years, every symbol's model is fit on its bars before
that year; from origins every ``prophet_origin_step`` trading days inside the year it forecasts the next
1..``prophet_forecast_days`` bars of the symbol (their real dates, so every forecast has an actual). The
random walk predicts the origin's close at every horizon. Targets of late origins may fall in the next year:
they are still out of sample, since the model and the anchor only use bars up to the origin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import bentoml
import numpy as np
import pandas as pd

from bentos.prophet_model import (
    DEFAULT_SEED,
    REGRESSOR,
    Prophet,
    ProphetModels,
    SymbolEntry,
    anchor_from_recent,
    anchored_forecast,
    future_trading_days,
    log_volume,
    quiet_prophet_logging,
)
from features.calendar import calendar_name
from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.splits import yearly_test_periods
from training.evaluation.walk_forward import Evaluation
from training.models.execution import Execution
from training.models.prophet_metrics import forecast_metrics, headline_horizons, per_horizon
from training.models.trainer import Fitted, Trainer

#: Fewest bars a symbol needs before a test year (two years, so the yearly seasonality is identified).
MIN_TRAIN_BARS = 500
#: Closes before the forecast in the plotting fan (about a year).
FAN_HISTORY_BARS = 250
#: Uncertainty draws per forecast. Measured on a 31-row forecast: 0 draws ~28 ms (no interval), 200 ~58 ms,
#: 1000 (Prophet's default) ~69 ms; the interval path has a fixed cost, so fewer draws save only 10-25 %. 200 draws
#: give the 80 % bounds a Monte Carlo error of ~0.5 % of price (1000 draws: ~0.25 %) on a band about ±5 % wide.
UNCERTAINTY_SAMPLES = 200
INTERVAL_WIDTH = 0.8

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


@dataclass
class SymbolFit:
    """One symbol's final model, its anchor and forecast fan; or why it was skipped."""

    model: Prophet | None = None
    entry: SymbolEntry | None = None
    fan: dict[str, list[Any]] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str | None = None


class PriceProphet(Trainer):
    """Prophet on log close with a log-volume regressor, one model per symbol, forecasts anchored to the last close."""

    name: ClassVar[str] = "price_prophet"
    task: ClassVar[str] = "price_forecast"
    target: ClassVar[str] = "log_close"
    primary_metric: ClassVar[str] = "mape"
    higher_is_better: ClassVar[bool] = False
    pooled: ClassVar[bool] = False
    pooling: ClassVar[str] = "one Prophet model per symbol (a price level and its seasonality belong to one series)"

    def __init__(self, config: TrainingConfig, execution: Execution | None = None):
        super().__init__(config, execution)
        quiet_prophet_logging()

    @property
    def horizon(self) -> int:
        """The longest forecast horizon in trading days (forecasts cover 1..horizon)."""
        return self.config.prophet_forecast_days

    def prophet_params(self) -> dict[str, Any]:
        return {
            "growth": "linear",
            "changepoint_prior_scale": 0.05,
            "seasonality_prior_scale": 10.0,
            "seasonality_mode": "additive",
            "daily_seasonality": False,
            "weekly_seasonality": True,
            "yearly_seasonality": True,
            "interval_width": INTERVAL_WIDTH,
            "uncertainty_samples": UNCERTAINTY_SAMPLES,
        }

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **self.prophet_params(),
            "target": "log(close)",
            "regressors": [REGRESSOR],
            "regressor_transform": "log1p(volume)",
            "regressor_fill": "last observed value",
            "anchored": "price = last_close * exp(yhat(d) - yhat(last_date)); bounds likewise",
            "interval_seed": DEFAULT_SEED,
            "fit_algorithm": "MAP (Stan LBFGS)",
            "fit_seed": self.config.seed,
            "forecast_days": self.config.prophet_forecast_days,
            "origin_step": self.config.prophet_origin_step,
            "min_train_bars": MIN_TRAIN_BARS,
            "first_date": self.config.first_date or "",
        }

    def symbol_bars(self, panel: Panel, symbol: str) -> pd.DataFrame:
        """A symbol's validated bars from ``config.first_date`` on (all of them without one)."""
        bars = panel.bars[symbol]
        if self.config.first_date is not None:
            bars = bars[bars["date"] >= pd.Timestamp(self.config.first_date)]
        return bars.reset_index(drop=True)

    def fit_symbol(self, bars: pd.DataFrame) -> Prophet:
        model = Prophet(**self.prophet_params())
        model.add_regressor(REGRESSOR)
        frame = pd.DataFrame(
            {
                "ds": pd.to_datetime(bars["date"]).to_numpy(),
                "y": np.log(bars["close"].to_numpy(dtype=float)),
                REGRESSOR: log_volume(bars["volume"]),
            }
        )
        return model.fit(frame, seed=self.config.seed)

    def evaluate_symbol(self, symbol: str, bars: pd.DataFrame, periods: list[Period]) -> SymbolEvaluation:
        """One symbol's walk-forward: per test year, a fit on its bars before it and forecasts from origins in it."""
        quiet_prophet_logging()  # also in a Dask worker's process
        days, step = self.config.prophet_forecast_days, self.config.prophet_origin_step
        result = SymbolEvaluation()
        dates = bars["date"].to_numpy(dtype="datetime64[D]")
        close = bars["close"].to_numpy(dtype=float)
        volume = bars["volume"].to_numpy(dtype=float)
        stamps = pd.DatetimeIndex(bars["date"])
        for fold, (start, end) in enumerate(periods):
            train = bars[dates < start]
            if len(train) < MIN_TRAIN_BARS:
                result.skipped.append(
                    {
                        "fold": fold,
                        "symbol": symbol,
                        "reason": f"{len(train)} bars before {start}, fewer than {MIN_TRAIN_BARS}",
                    }
                )
                continue
            began = time.perf_counter()
            model = self.fit_symbol(train)
            result.fit_seconds.append(time.perf_counter() - began)
            records: list[pd.DataFrame] = []
            for origin in np.flatnonzero((dates >= start) & (dates < end))[::step]:
                targets = np.arange(origin + 1, min(origin + days, len(bars) - 1) + 1)
                if targets.size == 0:
                    continue
                anchor = anchor_from_recent(
                    stamps[origin : origin + 1], close[origin : origin + 1], volume[origin : origin + 1]
                )
                began = time.perf_counter()
                forecast = anchored_forecast(model, anchor.date, anchor.close, anchor.log_volume, stamps[targets])
                result.forecast_seconds.append(time.perf_counter() - began)
                ahead = forecast.iloc[1:]
                records.append(
                    pd.DataFrame(
                        {
                            "date": stamps[origin],
                            "symbol": symbol,
                            "fold": fold,
                            "horizon": ahead["horizon"].to_numpy(),
                            "target_date": stamps[targets],
                            "actual": close[targets],
                            "prediction": ahead["price"].to_numpy(),
                            "lower": ahead["lower"].to_numpy(),
                            "upper": ahead["upper"].to_numpy(),
                            "baseline_random_walk": close[origin],
                        }
                    )
                )
            result.folds[fold] = ((dates[0], dates[len(train) - 1]), len(train), records)
        return result

    def fit_one(self, symbol: str, bars: pd.DataFrame) -> SymbolFit:
        """One symbol's final model on all its bars, its anchor and the report's forecast fan (see ``fit``)."""
        quiet_prophet_logging()
        if len(bars) < MIN_TRAIN_BARS:
            return SymbolFit(skipped=f"{len(bars)} bars, fewer than {MIN_TRAIN_BARS}")
        began = time.perf_counter()
        model = self.fit_symbol(bars)
        seconds = time.perf_counter() - began
        stamps = pd.DatetimeIndex(bars["date"])
        anchor = anchor_from_recent(stamps, bars["close"], bars["volume"])
        entry = SymbolEntry(
            last_date=str(anchor.date.date()),
            last_close=anchor.close,
            last_log_volume=anchor.log_volume,
            train_start=str(stamps[0].date()),
            train_end=str(stamps[-1].date()),
            n_train=len(bars),
            calendar=calendar_name(symbol),
        )
        future = future_trading_days(anchor.date, self.config.prophet_forecast_days, entry.calendar)
        forecast = anchored_forecast(model, anchor.date, anchor.close, anchor.log_volume, future)
        history = bars.iloc[-FAN_HISTORY_BARS:]
        fan: dict[str, list[Any]] = {
            "dates": [str(d.date()) for d in pd.DatetimeIndex(forecast["date"])],
            "price": [float(v) for v in forecast["price"]],
            "lower": [float(v) for v in forecast["lower"]],
            "upper": [float(v) for v in forecast["upper"]],
            "history_dates": [str(d.date()) for d in pd.DatetimeIndex(history["date"])],
            "history_close": [float(v) for v in history["close"]],
        }
        return SymbolFit(model, entry, fan, seconds)

    def _task(self, kind: str, symbol: str, panel: Panel, periods: list[Period]) -> SymbolEvaluation | SymbolFit:
        bars = self.symbol_bars(panel, symbol)
        return self.evaluate_symbol(symbol, bars, periods) if kind == "eval" else self.fit_one(symbol, bars)

    def _run(self, panel: Panel, kinds: tuple[str, ...]) -> dict[str, Any]:
        """Every symbol's evaluation and/or final fit as tasks named ``eval-SYMBOL``, ``fit-SYMBOL``. On a cluster
        each task takes its symbol's bars from the panel already on every worker (``Execution.shared``), so the
        task graph carries names, not bars (it carried every symbol's bars twice: 70 MB for 200 x 15 years)."""
        periods = yearly_test_periods(panel.dates, self.config.test_years)
        shared = self.execution.shared(panel)
        tasks: dict[str, tuple[Any, ...]] = {}
        for kind in kinds:
            for symbol in sorted(panel.bars):
                tasks[f"{kind}-{symbol}"] = (kind, symbol, shared, periods)
        return self.execution.run(self.name, self._task, tasks)

    def evaluate(self, panel: Panel) -> Evaluation:
        done = self._run(panel, ("eval",))
        return self._evaluation(panel, {name.removeprefix("eval-"): r for name, r in done.items()})

    def fit(self, panel: Panel) -> Fitted:
        """One model per symbol on all its bars (from ``config.first_date``), anchored on its last bar.

        ``report["fan"][symbol]`` is the final model's forecast from the snapshot's last bar for the report's
        plot: ``dates``, ``price``, ``lower``, ``upper`` (the anchor bar first, then the next ``forecast_days``
        sessions of the symbol's exchange, :mod:`features.calendar`) and the last ``FAN_HISTORY_BARS`` closes
        as ``history_dates`` and ``history_close``.
        """
        done = self._run(panel, ("fit",))
        return self._fitted({name.removeprefix("fit-"): r for name, r in done.items()})

    def evaluate_and_fit(self, panel: Panel) -> tuple[Evaluation, Fitted, float, float]:
        """Every symbol's evaluation and final fit as tasks at once; the seconds are the tasks' fits, summed."""
        done = self._run(panel, ("eval", "fit"))
        evaluations = {n.removeprefix("eval-"): r for n, r in done.items() if n.startswith("eval-")}
        fits = {n.removeprefix("fit-"): r for n, r in done.items() if n.startswith("fit-")}
        evaluation = self._evaluation(panel, evaluations)
        fitted = self._fitted(fits)
        return (
            evaluation,
            fitted,
            evaluation.extras["timing"]["fit_seconds_total"],
            sum(fitted.report["fit_seconds"].values()),
        )

    def _evaluation(self, panel: Panel, symbols: dict[str, SymbolEvaluation]) -> Evaluation:
        """The pooled evaluation of every symbol's results: folds in order, symbols sorted within a fold."""
        days, step = self.config.prophet_forecast_days, self.config.prophet_origin_step
        horizons = headline_horizons(days)
        records: list[pd.DataFrame] = []
        folds: list[dict[str, Any]] = []
        skipped = [
            s
            for fold in range(self.config.test_years)
            for symbol in sorted(symbols)
            for s in symbols[symbol].skipped
            if s["fold"] == fold
        ]
        periods = yearly_test_periods(panel.dates, self.config.test_years)
        for fold, (start, end) in enumerate(periods):
            fitted = [symbols[s].folds[fold] for s in sorted(symbols) if fold in symbols[s].folds]
            fold_records = [frame for _, _, frames in fitted for frame in frames]
            if not fold_records:
                continue
            fold_frame = pd.concat(fold_records, ignore_index=True)
            records.append(fold_frame)
            folds.append(
                {
                    "fold": fold,
                    "train_start": str(min(r[0] for r, _, _ in fitted)),
                    "train_end": str(max(r[1] for r, _, _ in fitted)),
                    "test_start": str(start),
                    "test_end": str(end - np.timedelta64(1, "D")),
                    "n_train": sum(n for _, n, _ in fitted),
                    "n_test": len(fold_frame),
                    "metrics": forecast_metrics(fold_frame, "prediction", horizons, coverage=True),
                    "baselines": {
                        "random_walk": forecast_metrics(fold_frame, "baseline_random_walk", horizons, coverage=False)
                    },
                }
            )
        if not records:
            raise ValueError(
                f"no symbol has {MIN_TRAIN_BARS} bars before any of the last {self.config.test_years} test years"
            )
        fit_seconds = [x for s in sorted(symbols) for x in symbols[s].fit_seconds]
        forecast_seconds = [x for s in sorted(symbols) for x in symbols[s].forecast_seconds]
        predictions = pd.concat(records, ignore_index=True)[list(PREDICTION_COLUMNS)]
        model_by_horizon = per_horizon(predictions, "prediction", coverage=True)
        walk_by_horizon = per_horizon(predictions, "baseline_random_walk", coverage=False)
        return Evaluation(
            model=self.name,
            task=self.task,
            primary_metric=self.primary_metric,
            higher_is_better=self.higher_is_better,
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
                "interval_width": INTERVAL_WIDTH,
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

    def _fitted(self, fits: dict[str, SymbolFit]) -> Fitted:
        models = {s: f.model for s, f in sorted(fits.items()) if f.model is not None}
        entries = {s: f.entry for s, f in sorted(fits.items()) if f.entry is not None}
        skipped = {s: f.skipped for s, f in sorted(fits.items()) if f.skipped is not None}
        if not models:
            raise ValueError(f"no symbol has {MIN_TRAIN_BARS} bars to fit price_prophet: {skipped}")
        return Fitted(
            model=ProphetModels(models, entries),
            hyperparameters=self.hyperparameters(),
            extra={
                "symbols": sorted(models),
                "anchors": {s: e.to_dict() for s, e in entries.items()},
                "skipped_symbols": skipped,
            },
            # per symbol and drawn by the report only: on the card they made a 7 MB model.yaml for 500 symbols,
            # parsed at every load of the model (70 s of the service's cold start)
            report={
                "fan": {s: f.fan for s, f in sorted(fits.items()) if f.model is not None},
                "fit_seconds": {s: f.seconds for s, f in sorted(fits.items()) if f.model is not None},
            },
        )

    def save(self, fitted: Fitted, metadata: dict[str, Any], labels: dict[str, str]) -> bentoml.Model:
        """Write the models and ``symbols.json`` into a new store version (load it with ``bentos.prophet_model``).

        The returned model's ``path`` is a temporary directory removed after the save: use its ``tag`` with
        ``bentoml.models.get``.
        """
        models: ProphetModels = fitted.model
        with bentoml.models.create(self.name, labels=labels, metadata=metadata) as model:
            models.save(model.path)
        return model
