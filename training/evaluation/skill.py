"""Did a model show skill over its baseline on the walk-forward test? The ``skill`` record of every card that has one.

A model shows skill when, on the walk-forward test, it is strictly better than its strongest baseline on the task's
skill metric; a tie or a missing number is no skill. The record is one plain sentence a client can read, with the two
numbers behind it. The metric per task:

* return regression: out-of-sample R² against a zero forecast (``r2_vs_zero``), the historical mean and the zero
  forecast as baselines. Both baselines score on the same scale (the zero forecast 0 by definition, the historical
  mean about +0.001 on daily index data), so the sentence shows what the model had to beat; the verdict is the one of
  the primary metric (R² against the historical mean), since both rank forecasts by their squared error.
* direction classification: AUC, against the majority class (a constant P(up), AUC 0.5). The served answer is a
  probability, not a class: AUC says whether it ranks up days above down days at all, whatever the threshold.
  The baseline's value is 0.5, the AUC of any constant forecast, not its pooled walk-forward AUC: the majority
  class's constant is each fold's training up-rate, so pooled over folds it ranks one year's days above another's
  (0.468 on the quick run), which is not skill either.
  Accuracy against the majority class would call a model with real but weak ranking no better than "always up"
  (at a 0.5 threshold it predicts "up" on nearly every day), and a model that only learnt the up-rate is not skill.
* volatility regression: MSE of the annualised volatility, against the best of EWMA and GARCH(1,1).
* price forecast: MAPE, against the random walk (the last close). Prophet anchored to the last close is expected to
  be about as good as the random walk; the gate lets it trail by a configured tolerance, and a MAPE within that
  tolerance is no skill: only a MAPE below the random walk's is.
* regime detection: no baseline to beat (label stability is judged instead): no record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from training.evaluation.metrics import finite_value

#: task -> (metric, higher is better, how the sentence names the metric)
SKILL_METRICS: dict[str, tuple[str, bool, str]] = {
    "return_regression": ("r2_vs_zero", True, "R²"),
    "direction_classification": ("auc", True, "AUC"),
    "volatility_regression": ("mse", False, "MSE"),
    "price_forecast": ("mape", False, "MAPE"),
}
#: Metrics whose no-skill level is fixed, whatever the baseline's pooled score: AUC of a constant forecast.
CHANCE = {"auc": 0.5}
#: Tasks whose model has no baseline to show skill over: their cards carry no ``skill``.
NO_SKILL_RECORD = frozenset({"regime_detection"})
WHERE = "on the walk-forward test"


def skill_record(
    task: str, metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]
) -> dict[str, Any] | None:
    """``{"shown", "metric", "model", "baseline", "baseline_value", "statement"}`` from the walk-forward metrics of a
    model and its baselines; None for a task without a baseline (the regime model)."""
    if task in NO_SKILL_RECORD:
        return None
    if task not in SKILL_METRICS:
        raise ValueError(f"no skill metric for the task {task!r}; known: {', '.join(SKILL_METRICS)}")
    metric, higher, label = SKILL_METRICS[task]
    ours = finite_value(metrics.get(metric))
    if metric in CHANCE:
        scores = dict.fromkeys(baselines or ["constant"], CHANCE[metric])
    else:
        scores = {name: value for name, m in baselines.items() if (value := finite_value(m.get(metric))) is not None}
    if not scores:
        return _record(False, metric, ours, "", None, f"no skill shown: no baseline has a finite {label} {WHERE}")
    best = (max if higher else min)(scores, key=lambda name: scores[name])
    theirs = scores[best]
    if ours is None:
        return _record(False, metric, None, best, theirs, f"no skill shown: the model has no finite {label} {WHERE}")
    shown = ours > theirs if higher else ours < theirs
    a, b = _numbers(metric, ours, theirs)
    statement = f"{'skill' if shown else 'no skill'} over {best} {WHERE}: {label} {a} vs {b}"
    return _record(shown, metric, ours, best, theirs, statement)


def skill_of_card(metadata: Mapping[str, Any]) -> dict[str, Any] | None:
    """A stored card's ``skill``; computed from its walk-forward metrics for a card written before cards had one
    (None for the regime HMM's, or a card too malformed to tell: reading it as a card names what is wrong)."""
    if "skill" in metadata:
        return dict(metadata["skill"]) if isinstance(metadata["skill"], Mapping) else None
    task, metrics, baselines = metadata.get("task"), metadata.get("metrics"), metadata.get("baseline_metrics")
    if not isinstance(task, str) or task not in SKILL_METRICS or not isinstance(metrics, Mapping):
        return None
    if not isinstance(baselines, Mapping) or not all(isinstance(m, Mapping) for m in baselines.values()):
        return None
    return skill_record(task, metrics, baselines)


def _record(
    shown: bool, metric: str, model: float | None, baseline: str, baseline_value: float | None, statement: str
) -> dict[str, Any]:
    nan = float("nan")  # BentoML metadata takes NaN, never None
    return {
        "shown": shown,
        "metric": metric,
        "model": nan if model is None else float(model),
        "baseline": baseline,
        "baseline_value": nan if baseline_value is None else float(baseline_value),
        "statement": statement,
    }


def _format(metric: str, value: float, digits: int) -> str:
    if metric == "mse":
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f} %" if metric == "mape" else f"{value:.{digits}f}"


def _numbers(metric: str, ours: float, theirs: float) -> tuple[str, str]:
    """Both numbers as the sentence shows them, with more digits when the usual ones would print them alike."""
    usual = 4 if metric == "mse" else 3
    for digits in range(usual, usual + 6):
        a, b = _format(metric, ours, digits), _format(metric, theirs, digits)
        if a != b or ours == theirs:
            break
    return a, b
