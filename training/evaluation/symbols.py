"""How a model did symbol by symbol: the spread across symbols of its primary metric and of its best baseline's.

A pooled metric can hide a model that works on a few symbols and fails on the rest. From the walk-forward
predictions (one row per out-of-sample forecast, with its symbol), each symbol's rows are scored on their own, the
model's and every baseline's forecast on the same rows, with the same metric as the pooled figure:

* the tabular models (returns, direction, volatility): the trainer's own ``score_all`` on the symbol's rows;
* the price forecast (Prophet): MAPE over every horizon 1..N of the symbol's forecasts (the pooled ``mape``), the
  random walk on the same forecasts, with :func:`training.evaluation.metrics.mape`;
* the regime detection: no per-symbol figure. Its metric, the agreement of independent refits' served regimes,
  is measured on the pooled days, and the evaluation keeps only the final model's labels per row.

The summary names the metric and the best baseline (the best on the pooled primary metric), the number of symbols,
the median and the worst decile of the model's and the baseline's per-symbol values (``numpy.quantile``, linear:
the 10th percentile of a higher-is-better metric, the 90th of an error), the share of scored symbols where the model
is strictly better than the baseline (a tie is not), and the symbols where the model falls furthest behind it. A
symbol with fewer than ``MIN_SCORED_ROWS`` rows every forecast answers, or whose metric is not finite, is counted
and named with the reason, never dropped. The worst symbols are ranked by :func:`shortfall`, how far the model
falls behind the baseline (by difference for a higher-is-better metric, by ratio for an error, so that a volatile
symbol's larger errors do not rank it worst by scale alone).

Cost, measured on 500 symbols × 500 rows in one process: 9 ms a symbol for the direction model (scikit-learn's
AUC, Brier score and log loss on each), 1 ms for volatility: about 5 s for the slowest model's card, so the
scoring stays with the card in the process that builds it rather than going to the cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from training.evaluation.metrics import SameRows, finite_value, mape, same_rows

#: Fewest rows, answered by the model and every baseline, for a symbol's metric to be reported (about a month of
#: daily forecasts: fewer make a symbol's R² or log loss noise).
MIN_SCORED_ROWS = 20
#: How many of the worst symbols the card names.
WORST_SYMBOLS = 5
#: The prefix of a baseline's column in the walk-forward predictions.
BASELINE_PREFIX = "baseline_"


class ScoredRows(Protocol):
    """What a scorer returns: the model's and each baseline's metrics, all on the same rows."""

    @property
    def model(self) -> Mapping[str, float]: ...

    @property
    def baselines(self) -> Mapping[str, Mapping[str, float]]: ...

    @property
    def rows(self) -> SameRows: ...


#: ``score_all(actual, prediction, baselines)``: the trainers' way to score the model and every baseline together.
ScoreAll = Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray]], ScoredRows]


@dataclass(frozen=True)
class ForecastErrors:
    """MAPE of a price forecast and of each baseline on the same forecasts."""

    model: dict[str, float]
    baselines: dict[str, dict[str, float]]
    rows: SameRows


def forecast_errors(actual: np.ndarray, prediction: np.ndarray, baselines: dict[str, np.ndarray]) -> ForecastErrors:
    """The price forecast's ``score_all``: MAPE (percent) of the model and of each baseline where all are finite."""
    rows = same_rows(actual, {"model": prediction, **baselines})
    keep = rows.mask
    return ForecastErrors(
        {"mape": mape(actual[keep], prediction[keep]) if keep.any() else math.nan},
        {name: {"mape": mape(actual[keep], v[keep]) if keep.any() else math.nan} for name, v in baselines.items()},
        rows,
    )


#: Tasks scored per symbol without a trainer's ``score_all``, and tasks without a per-symbol figure (with why).
TASK_SCORERS: dict[str, ScoreAll] = {"price_forecast": forecast_errors}
WITHOUT_SYMBOL_FIGURE: dict[str, str] = {
    "regime_detection": "label agreement compares refits over the pooled days; no agreement is kept per symbol",
}


class Evaluated(Protocol):
    """What the spread reads of an :class:`~training.evaluation.walk_forward.Evaluation`."""

    task: str
    primary_metric: str
    higher_is_better: bool
    baselines: dict[str, dict[str, float]]
    predictions: pd.DataFrame
    extras: dict[str, Any]


def best_baseline(baselines: Mapping[str, Mapping[str, float]], metric: str, higher_is_better: bool) -> str | None:
    """The baseline with the best pooled ``metric`` (the first of equals); None when none has a finite one."""
    scores = {n: value for n, m in baselines.items() if (value := finite_value(m.get(metric))) is not None}
    if not scores:
        return None
    return (max if higher_is_better else min)(scores, key=lambda name: scores[name])


def worst_decile(values: Sequence[float] | np.ndarray, higher_is_better: bool) -> float:
    """The 10th percentile of a higher-is-better metric, the 90th of an error (linear interpolation); NaN if empty."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return math.nan
    return float(np.quantile(values, 0.1 if higher_is_better else 0.9))


def shortfall(model: float, baseline: float, higher_is_better: bool) -> float:
    """How far the model falls behind the baseline on one symbol (negative: ahead). A higher-is-better metric
    (R², AUC) is compared by difference; an error by ratio, ``model / baseline - 1``, so that symbols whose errors
    differ in scale (a volatile stock's MSE or MAPE) rank side by side."""
    if higher_is_better:
        return baseline - model
    if baseline > 0:
        return model / baseline - 1.0
    return model - baseline


def symbol_scores(evaluation: Evaluated, score_all: ScoreAll, baseline: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Each symbol's primary metric of the model and of ``baseline`` (columns symbol, rows, model, baseline) for
    the symbols that could be scored, sorted by symbol, and the reason for each that could not."""
    frame = evaluation.predictions
    metric = evaluation.primary_metric
    columns = [c for c in frame.columns if c.startswith(BASELINE_PREFIX)]
    records: list[dict[str, Any]] = []
    unscored: dict[str, str] = {}
    for symbol, part in frame.groupby("symbol", sort=True, observed=True):
        name = str(symbol)
        actual = part["actual"].to_numpy(dtype=float)
        prediction = part["prediction"].to_numpy(dtype=float)
        forecasts = {c.removeprefix(BASELINE_PREFIX): part[c].to_numpy(dtype=float) for c in columns}
        answered = same_rows(actual, {"model": prediction, **forecasts}).n
        if answered < MIN_SCORED_ROWS:
            unscored[name] = f"{answered} rows answered by the model and every baseline, fewer than {MIN_SCORED_ROWS}"
            continue
        scores = score_all(actual, prediction, forecasts)
        if scores.rows.n < MIN_SCORED_ROWS:
            unscored[name] = f"{scores.rows.n} scored rows, fewer than {MIN_SCORED_ROWS}"
            continue
        values = {"model": scores.model.get(metric), baseline: scores.baselines.get(baseline, {}).get(metric)}
        ours, theirs = (finite_value(v) for v in values.values())
        if ours is None or theirs is None:
            found = ", ".join(f"{k} {v}" for k, v in values.items())
            unscored[name] = f"{metric} not finite on its {scores.rows.n} rows ({found})"
            continue
        records.append({"symbol": name, "rows": scores.rows.n, "model": ours, "baseline": theirs})
    return pd.DataFrame(records, columns=["symbol", "rows", "model", "baseline"]), unscored


@dataclass(frozen=True)
class SymbolTable:
    """Every symbol's primary metric, the model's beside ``baseline``'s, and the symbols that could not be scored.

    ``scores``: one row per scored symbol, sorted by symbol: symbol, rows, model, baseline, shortfall (how far the
    model falls behind the baseline, :func:`shortfall`), beats (strictly better than the baseline).
    """

    metric: str
    higher_is_better: bool
    baseline: str
    scores: pd.DataFrame
    unscored: dict[str, str]

    def summary(self) -> dict[str, Any]:
        """The card's ``by_symbol``: the spread across symbols, the share beaten, the worst symbols, the unscored."""
        table, higher = self.scores, self.higher_is_better
        model, theirs = table["model"].to_numpy(), table["baseline"].to_numpy()
        behind, wins = table["shortfall"].to_numpy(), table["beats"].to_numpy(dtype=bool)
        order = np.argsort(-behind, kind="stable")[:WORST_SYMBOLS]
        return {
            "metric": self.metric,
            "higher_is_better": higher,
            "baseline": self.baseline,
            "worst_decile_quantile": 0.1 if higher else 0.9,
            "min_rows": MIN_SCORED_ROWS,
            "symbols": len(table) + len(self.unscored),
            "scored": len(table),
            "model": _spread(model, higher),
            "baseline_spread": _spread(theirs, higher),
            "beats_baseline_share": float(wins.mean()) if wins.size else math.nan,
            "worst": [
                {
                    "symbol": str(table["symbol"].to_numpy()[i]),
                    "rows": int(table["rows"].to_numpy()[i]),
                    "model": float(model[i]),
                    "baseline": float(theirs[i]),
                    "shortfall": float(behind[i]),
                }
                for i in order
            ],
            "unscored": dict(self.unscored),
        }

    def to_dict(self) -> dict[str, Any]:
        """For the report's metrics.json: every symbol's figures, and the unscored ones with why."""
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "scores": self.scores.to_dict(orient="records"),
            "unscored": dict(self.unscored),
        }


def symbol_table(
    evaluation: Evaluated, score_all: ScoreAll | None = None, symbols: Sequence[str] = ()
) -> SymbolTable | None:
    """Every symbol's walk-forward primary metric, the model's and its best baseline's; None for a task without a
    per-symbol figure.

    ``score_all`` scores the model and its baselines on the same rows (a tabular trainer's own); without one, the
    task's scorer of ``TASK_SCORERS``. ``symbols`` (the snapshot's) adds the symbols without a single walk-forward
    prediction to the unscored ones, with the evaluation's reason when its ``extras["skipped"]`` names them (Prophet:
    ``{"fold", "symbol", "reason"}`` per symbol and test year skipped).
    """
    task, metric, higher = evaluation.task, evaluation.primary_metric, evaluation.higher_is_better
    if task in WITHOUT_SYMBOL_FIGURE:
        return None
    scorer = score_all or TASK_SCORERS.get(task)
    if scorer is None:
        raise ValueError(f"no per-symbol scorer for the task {task!r}: pass the trainer's score_all")
    baseline = best_baseline(evaluation.baselines, metric, higher)
    if baseline is None:
        raise ValueError(f"no baseline of the {task} evaluation has a finite pooled {metric}")
    table, unscored = symbol_scores(evaluation, scorer, baseline)
    present = set(evaluation.predictions["symbol"].astype(str))
    skipped = {str(s["symbol"]): str(s["reason"]) for s in evaluation.extras.get("skipped", ())}
    for symbol in map(str, symbols):
        if symbol not in present:
            why = f" ({skipped[symbol]})" if symbol in skipped else ""  # the last test year's reason
            unscored[symbol] = f"no walk-forward prediction{why}"
    model, theirs = table["model"].to_numpy(), table["baseline"].to_numpy()
    table["shortfall"] = np.array([shortfall(a, b, higher) for a, b in zip(model, theirs, strict=True)], dtype=float)
    table["beats"] = (model > theirs) if higher else (model < theirs)
    return SymbolTable(metric, higher, baseline, table, dict(sorted(unscored.items())))


def symbol_distribution(
    evaluation: Evaluated, score_all: ScoreAll | None = None, symbols: Sequence[str] = ()
) -> dict[str, Any] | None:
    """The card's ``by_symbol`` record of an evaluation (:meth:`SymbolTable.summary`); None for a task without a
    per-symbol figure."""
    table = symbol_table(evaluation, score_all, symbols)
    return None if table is None else table.summary()


def _spread(values: np.ndarray, higher_is_better: bool) -> dict[str, float]:
    median = float(np.median(values)) if values.size else math.nan
    return {"median": median, "worst_decile": worst_decile(values, higher_is_better)}
