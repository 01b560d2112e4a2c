"""What the regimes were worth out of sample: realised return and volatility per served regime, per test year.

The labels are those a client was served: for each test year, the regime the yearly refit trained before that year
answers on each of its days (the forward filter over the service's context window, ``training/models/
regime_labels.py``), never the final model's, which has seen the year. The outcome is the *next* day's log return
(close of t to close of t + 1): the label is read at the close of t, and the day's own return is part of the
observation it was computed from, so only the next day is out of sample.

Per state: days, annualised mean return (``252 x mean``) and annualised realised volatility (``sqrt(252 x
mean(r^2))``, as the model's own state statistics). The regimes are worth something if the calmest state's next
days are calmer than the most turbulent state's in every test year; a year in which either has fewer than
``MIN_DAYS`` days is not compared and is reported as such: a regime that (nearly) did not occur says nothing about
its ordering, and a volatility estimated from n daily returns has a relative standard error of about 1 / sqrt(2n),
over 15 % below a month of days. (At 5 days, the S&P 500's 2012 counted 5 turbulent days whose next-day
volatility was 3.6 %, against 12.5 % for its 121 calm days: noise, not evidence.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.evaluation.backtest import TRADING_DAYS

#: Fewest days of a state in a test year for its volatility to be compared: a month of trading days.
MIN_DAYS = 21
#: Column of the walk-forward predictions holding each row's out-of-sample served label (-1 outside test years).
LABEL_COLUMN = "served_out_of_sample"
#: Column holding each row's next-day log return.
RETURN_COLUMN = "next_log_return"


def state_names(predictions: pd.DataFrame) -> list[str]:
    """The states in canonical order, from the posterior columns ``p_<name>`` of the predictions."""
    return [c.removeprefix("p_") for c in predictions.columns if c.startswith("p_")]


def _state_figures(returns: np.ndarray) -> dict[str, Any]:
    if returns.size == 0:
        return {"days": 0}
    return {
        "days": int(returns.size),
        "mean_return": float(TRADING_DAYS * returns.mean()),
        "volatility": float(np.sqrt(TRADING_DAYS * np.mean(returns**2))),
    }


def regime_outcomes(predictions: pd.DataFrame, names: Sequence[str] | None = None) -> dict[str, Any]:
    """The card's ``quant`` record of the regime model: figures per state over every test year and per year."""
    names = list(names) if names is not None else state_names(predictions)
    labels = predictions[LABEL_COLUMN].to_numpy(np.int64)
    returns = predictions[RETURN_COLUMN].to_numpy(float)
    keep = (labels >= 0) & np.isfinite(returns)
    years = pd.DatetimeIndex(predictions["date"]).year.to_numpy()
    calm, turbulent = names[0], names[-1]
    by_year: list[dict[str, Any]] = []
    for year in np.unique(years[keep]):
        mine = keep & (years == year)
        states = {name: _state_figures(returns[mine & (labels == i)]) for i, name in enumerate(names)}
        entry: dict[str, Any] = {"year": int(year), "states": states}
        compared = min(states[calm]["days"], states[turbulent]["days"]) >= MIN_DAYS
        entry["compared"] = compared
        if compared:
            entry["turbulent_above_calm"] = states[turbulent]["volatility"] > states[calm]["volatility"]
        by_year.append(entry)
    compared_years = [e for e in by_year if e["compared"]]
    ordered = sum(e["turbulent_above_calm"] for e in compared_years)
    return {
        "labels": "served by the yearly refit trained before each test year (forward filter, service context)",
        "outcome": "next day's log return (close t to close t+1), annualised",
        "min_days_compared": MIN_DAYS,
        "states": {name: _state_figures(returns[keep & (labels == i)]) for i, name in enumerate(names)},
        "by_year": by_year,
        "years": len(by_year),
        "years_compared": len(compared_years),
        "years_turbulent_above_calm": int(ordered),
        "turbulent_above_calm_every_year": bool(compared_years) and ordered == len(compared_years),
    }
