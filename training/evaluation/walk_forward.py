"""Results of a walk-forward evaluation, shared by every trainer, the report and the promotion gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from training.evaluation.quant import QuantSeries
from training.evaluation.symbols import ScoreAll, SymbolTable, symbol_table

#: Metrics where a larger value is better; every other metric is an error or a loss.
HIGHER_IS_BETTER = frozenset(
    {"correlation", "r2_vs_zero", "r2_vs_mean", "hit_rate", "accuracy", "auc", "coverage", "label_agreement"}
)


@dataclass
class Evaluation:
    """A model's out-of-sample metrics beside each baseline's, pooled over all walk-forward folds.

    ``predictions`` holds one row per out-of-sample prediction (date, symbol, fold, actual, model and one
    column per baseline) for the report's plots; ``extras`` holds task-specific results (feature
    importances, regime statistics, per-horizon errors); ``symbol_scores`` every symbol's primary metric beside its
    best baseline's, once :meth:`by_symbol` has scored them (the card does).
    """

    model: str
    task: str
    primary_metric: str
    higher_is_better: bool
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    folds: list[dict[str, Any]]
    predictions: pd.DataFrame = field(repr=False)
    extras: dict[str, Any] = field(default_factory=dict)
    symbol_scores: SymbolTable | None = field(default=None, repr=False)
    quant: dict[str, Any] | None = None
    quant_series: QuantSeries | None = field(default=None, repr=False)

    def beats(self, baseline: str, metric: str | None = None) -> bool:
        """Whether the model is better than ``baseline`` on ``metric`` (the primary metric by default)."""
        metric = metric or self.primary_metric
        higher = self.higher_is_better if metric == self.primary_metric else metric in HIGHER_IS_BETTER
        ours, theirs = self.metrics[metric], self.baselines[baseline][metric]
        return ours > theirs if higher else ours < theirs

    def by_symbol(self, score_all: ScoreAll | None = None, symbols: Sequence[str] = ()) -> dict[str, Any] | None:
        """The spread across symbols of the primary metric, the model's and its best baseline's (the card's
        ``by_symbol``, ``training/evaluation/symbols.py``); None for a task without a per-symbol figure (the regime
        HMM's). ``score_all``: the trainer's (the tabular models); ``symbols``: the snapshot's, so that a symbol
        without a prediction is named. Keeps every symbol's figures in ``symbol_scores`` for the report."""
        self.symbol_scores = symbol_table(self, score_all, symbols)
        return None if self.symbol_scores is None else self.symbol_scores.summary()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (predictions left out)."""
        return {
            "model": self.model,
            "task": self.task,
            "primary_metric": self.primary_metric,
            "higher_is_better": self.higher_is_better,
            "metrics": _clean(self.metrics),
            "baselines": {k: _clean(v) for k, v in self.baselines.items()},
            "folds": [_clean(f) for f in self.folds],
            "extras": _clean(self.extras),
            "symbol_scores": None if self.symbol_scores is None else _clean(self.symbol_scores.to_dict()),
            "quant": _clean(self.quant),
        }


def _clean(value: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


clean_json = _clean
