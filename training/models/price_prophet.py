"""``price_prophet``: one Prophet model of log close per symbol, anchored to the last close, against the random walk.

Prophet fits a smooth trend plus weekly and yearly seasonality (and a ``log_volume`` regressor) to the log close.
Forecasts apply only Prophet's predicted change since the anchor bar to that bar's close (see
``bentos/prophet_model.py``); unanchored, the smooth curve's offset from the last close makes Prophet several
times worse than the random walk. Anchored, it is expected to be about as good as the random walk, not better.

Walk-forward: for each of the last ``test_years`` calendar years, and the year before them, every symbol's model is
fit on its bars before that year; from origins every ``prophet_origin_step`` trading days inside the year it
forecasts the next 1..``prophet_forecast_days`` bars of the symbol (their real dates, so every forecast has an
actual). The random walk predicts the origin's close at every horizon. Targets of late origins may fall in the next
year: they are still out of sample, since the model and the anchor only use bars up to the origin.

Intervals (``bentos/prophet_intervals.py``): each test year's are calibrated on the forecasts of the years before it
only (the year before the first test year is forecast for that alone, and scored nowhere), so the coverage the card
reports is what a client would have seen; the served model's are calibrated on every year's forecasts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import bentoml
import numpy as np
import pandas as pd

from bentos.prophet_intervals import LEVEL, METHOD, ConformalInterval, close_variance
from bentos.prophet_model import (
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
from training.models.prophet_evaluation import MIN_TRAIN_BARS, Period, SymbolEvaluation, pooled_evaluation
from training.models.trainer import Fitted, Trainer

#: Closes before the forecast in the plotting fan (about a year).
FAN_HISTORY_BARS = 250
#: No uncertainty draws: the intervals are conformal. Measured on a 31-row forecast: 0 draws ~28 ms, 200 ~58 ms.
UNCERTAINTY_SAMPLES = 0


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
            "uncertainty_samples": UNCERTAINTY_SAMPLES,
        }

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **self.prophet_params(),
            "target": "log(close)",
            "regressors": [REGRESSOR],
            "regressor_transform": "log1p(volume)",
            "regressor_fill": "last observed value",
            "anchored": "price = last_close * exp(yhat(d) - yhat(last_date))",
            "intervals": METHOD,
            "interval_level": LEVEL,
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
        volatility = np.sqrt(close_variance(close))
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
                            "lower": np.nan,  # calibrated on the years before, once every symbol's are in
                            "upper": np.nan,
                            "volatility": volatility[origin],
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
            last_variance=float(close_variance(bars["close"].to_numpy(dtype=float))[-1]),
            calendar=calendar_name(symbol),
        )
        future = future_trading_days(anchor.date, self.config.prophet_forecast_days, entry.calendar)
        forecast = anchored_forecast(model, anchor.date, anchor.close, anchor.log_volume, future)
        history = bars.iloc[-FAN_HISTORY_BARS:]
        fan: dict[str, list[Any]] = {  # the bounds are added once the intervals are calibrated (``_fitted``)
            "dates": [str(d.date()) for d in pd.DatetimeIndex(forecast["date"])],
            "price": [float(v) for v in forecast["price"]],
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
        periods = self.periods(panel)
        shared = self.execution.shared(panel)
        tasks: dict[str, tuple[Any, ...]] = {}
        for kind in kinds:
            for symbol in sorted(panel.bars):
                tasks[f"{kind}-{symbol}"] = (kind, symbol, shared, periods)
        return self.execution.run(self.name, self._task, tasks)

    def periods(self, panel: Panel) -> list[Period]:
        """The year the first test year's intervals are calibrated on, then the ``test_years`` test years."""
        return yearly_test_periods(panel.dates, self.config.test_years + 1)

    def evaluate(self, panel: Panel) -> Evaluation:
        done = self._run(panel, ("eval",))
        return self._evaluation(panel, {name.removeprefix("eval-"): r for name, r in done.items()})[0]

    def fit(self, panel: Panel) -> Fitted:
        """One model per symbol on all its bars (from ``config.first_date``), anchored on its last bar.

        ``report["fan"][symbol]`` is the final model's forecast from the snapshot's last bar for the report's
        plot: ``dates``, ``price``, ``lower``, ``upper`` (the anchor bar first, then the next ``forecast_days``
        sessions of the symbol's exchange, :mod:`features.calendar`) and the last ``FAN_HISTORY_BARS`` closes
        as ``history_dates`` and ``history_close``.
        """
        return self.evaluate_and_fit(panel)[1]  # the intervals are calibrated on the walk-forward's forecasts

    def evaluate_and_fit(self, panel: Panel) -> tuple[Evaluation, Fitted, float, float]:
        """Every symbol's evaluation and final fit as tasks at once; the seconds are the tasks' fits, summed."""
        done = self._run(panel, ("eval", "fit"))
        evaluations = {n.removeprefix("eval-"): r for n, r in done.items() if n.startswith("eval-")}
        fits = {n.removeprefix("fit-"): r for n, r in done.items() if n.startswith("fit-")}
        evaluation, intervals = self._evaluation(panel, evaluations)
        fitted = self._fitted(fits, intervals)
        coverage = evaluation.extras["coverage_by_horizon"]  # the card's: each horizon's, walk-forward
        fitted.extra["interval_coverage_by_horizon"] = {str(h): float(v) for h, v in coverage.items()}
        return (
            evaluation,
            fitted,
            evaluation.extras["timing"]["fit_seconds_total"],
            sum(fitted.report["fit_seconds"].values()),
        )

    def _evaluation(self, panel: Panel, symbols: dict[str, SymbolEvaluation]) -> tuple[Evaluation, ConformalInterval]:
        return pooled_evaluation(self, self.periods(panel), symbols)

    def _fitted(self, fits: dict[str, SymbolFit], intervals: ConformalInterval) -> Fitted:
        models = {s: f.model for s, f in sorted(fits.items()) if f.model is not None}
        entries = {s: f.entry for s, f in sorted(fits.items()) if f.entry is not None}
        skipped = {s: f.skipped for s, f in sorted(fits.items()) if f.skipped is not None}
        if not models:
            raise ValueError(f"no symbol has {MIN_TRAIN_BARS} bars to fit price_prophet: {skipped}")
        fans = {}
        for symbol in models:
            fan = fits[symbol].fan
            price = np.asarray(fan["price"])
            volatility = np.sqrt(entries[symbol].last_variance)
            lower, upper = intervals.bounds(price, volatility, np.arange(price.size))
            fans[symbol] = {**fan, "lower": lower.tolist(), "upper": upper.tolist()}
        return Fitted(
            model=ProphetModels(models, entries, intervals),
            hyperparameters=self.hyperparameters(),
            extra={
                "symbols": sorted(models),
                "anchors": {s: e.to_dict() for s, e in entries.items()},
                "skipped_symbols": skipped,
                "intervals": intervals.card(),
            },
            # per symbol and drawn by the report only: on the card they made a 7 MB model.yaml for 500 symbols,
            # parsed at every load of the model (70 s of the service's cold start)
            report={
                "fan": fans,
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
