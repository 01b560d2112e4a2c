"""A model's walk-forward test in a quant's terms: the card's ``quant`` record, by task.

* return regression and direction classification: the IC of the prediction against the realised forward return
  (``signal.py``), quantile returns, and the after-cost backtest of its long/flat (and, in a universe, long/short)
  strategy against buy-and-hold and against the same strategy on its baseline's signal (``backtest.py``); the
  direction model's P(up) also gets its calibration against the outcome it predicts;
* volatility regression: the IC of the forecast against the realised volatility, and the volatility-targeting book
  run on the model's forecast, on EWMA's, GARCH(1,1)'s and HAR-RV's;
* regime detection: realised return and volatility of the next day per served regime, per test year, labelled by
  the refit trained before each year (``regimes.py``);
* price forecast: its figures are its own (interval coverage per horizon, the random walk's error beside its own).

The card keeps summaries; the series behind them (IC per period, the strategies' returns) go to the report only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from training.evaluation.backtest import Returns, signal_backtest, volatility_targeting
from training.evaluation.regimes import regime_outcomes
from training.evaluation.signal import (
    calibration,
    information_coefficient,
    is_cross_sectional,
    period_ics,
    quantile_analysis,
)

#: task -> (long/flat threshold on the prediction, the baseline whose signal is traded beside the model's)
SIGNAL_TASKS: dict[str, tuple[float, str]] = {
    "return_regression": (0.0, "historical_mean"),
    "direction_classification": (0.5, "majority"),
}
#: The volatility forecasts a risk-targeting book is run on: name -> prediction column.
VOLATILITY_FORECASTS = {
    "model": "prediction",
    "ewma": "baseline_ewma",
    "garch": "baseline_garch",
    "har": "baseline_har",
}


@dataclass
class QuantSeries:
    """What the report plots: IC per period and each strategy's period returns (before costs, with turnover)."""

    ic: pd.DataFrame
    strategies: dict[str, Returns] = field(default_factory=dict)


def quant_figures(
    task: str, predictions: pd.DataFrame, horizon: int
) -> tuple[dict[str, Any] | None, QuantSeries | None]:
    """The card's ``quant`` record of a model's walk-forward predictions (``date``, ``symbol``, ``actual``,
    ``prediction``, ``realised_return`` and the ``baseline_*`` columns), and the series behind it; (None, None) for
    a task without one."""
    if task in SIGNAL_TASKS:
        threshold, baseline = SIGNAL_TASKS[task]
        frame = predictions.rename(columns={"realised_return": "realised"})
        backtest = signal_backtest(frame, horizon, threshold, baseline)
        strategies = backtest.pop("paths")
        record: dict[str, Any] = {
            "ic": information_coefficient(frame, horizon),
            "quantiles": quantile_analysis(frame, horizon),
            "backtest": backtest,
        }
        if task == "direction_classification":
            record["calibration"] = calibration(
                frame["prediction"].to_numpy(float),
                frame["actual"].to_numpy(float),
                frame[f"baseline_{baseline}"].to_numpy(float) if f"baseline_{baseline}" in frame else None,
            )
        return record, QuantSeries(_ic_series(frame), strategies)
    if task == "volatility_regression":
        against_volatility = predictions.rename(columns={"actual": "realised"})
        frame = predictions.rename(columns={"realised_return": "realised"})
        books = volatility_targeting(frame, VOLATILITY_FORECASTS, horizon)
        strategies = books.pop("paths")
        record = {"ic": information_coefficient(against_volatility, horizon), "vol_targeting": books}
        return record, QuantSeries(_ic_series(against_volatility), strategies)
    if task == "regime_detection":
        return regime_outcomes(predictions), None
    return None, None


def _ic_series(frame: pd.DataFrame) -> pd.DataFrame:
    return period_ics(frame.dropna(subset=["prediction", "realised"]), is_cross_sectional(frame))


def headline(quant: Mapping[str, Any] | None) -> tuple[str, str]:
    """Two short texts for ``mlops models``: the rank IC with its 95 % interval, and the after-cost Sharpe at the
    lowest cost level beside its baseline's (the baseline signal's strategy; for a volatility model the best of the
    baseline forecasts' volatility-targeting books). ``-`` where the card has no such figure."""
    if not isinstance(quant, Mapping):
        return "-", "-"
    rank = quant.get("ic", {}).get("rank", {})
    ic = f"{rank['mean']:.3f} [{rank['ci_low']:.3f}, {rank['ci_high']:.3f}]" if "ci_low" in rank else "-"
    sharpe = "-"
    if "backtest" in quant:
        backtest = quant["backtest"]
        cost = f"{backtest['costs_bp'][0]:g}"
        strategies = backtest["strategies"]
        ours = strategies["long_flat"]["by_cost"][cost]["sharpe"]
        rival = next((k for k in strategies if k.startswith("long_flat_")), "buy_and_hold")
        sharpe = f"{ours:.2f} vs {strategies[rival]['by_cost'][cost]['sharpe']:.2f} ({cost} bp)"
    elif "vol_targeting" in quant:
        books = quant["vol_targeting"]
        cost = f"{books['costs_bp'][0]:g}"
        sharpes = {name: book["by_cost"][cost]["sharpe"] for name, book in books["forecasts"].items()}
        ours = sharpes.pop("model")
        best = max(sharpes, key=lambda name: sharpes[name])
        sharpe = f"{ours:.2f} vs {best} {sharpes[best]:.2f} ({cost} bp)"
    return ic, sharpe
