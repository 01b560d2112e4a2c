"""The shape every trainer shares: walk-forward evaluation, a final fit on the whole snapshot, a save."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.metrics import SameRows, same_rows
from training.evaluation.skill import skill_record
from training.evaluation.splits import Split, walk_forward_splits, yearly_test_periods
from training.evaluation.walk_forward import Evaluation

#: The model's name among the forecasts scored together (each baseline keeps its own).
MODEL = "model"


@dataclass
class Scores:
    """The model's and each baseline's metrics, all on the same rows; ``rows`` says how many were dropped and why."""

    model: dict[str, float]
    baselines: dict[str, dict[str, float]]
    rows: SameRows


@dataclass
class Fitted:
    """A final model with what its card needs to describe it."""

    model: Any
    hyperparameters: dict[str, Any]
    extra: dict[str, Any]


class Trainer(ABC):
    """One model of the product: its store name, task and target, and how to evaluate, fit and save it."""

    name: ClassVar[str]
    task: ClassVar[str]
    target: ClassVar[str]
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    pooled: ClassVar[bool] = True
    pooling: ClassVar[str] = "one model pooled across the snapshot's symbols (its features are scale-free)"

    def __init__(self, config: TrainingConfig):
        self.config = config

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def splits(self, panel: Panel) -> list[Split]:
        periods = yearly_test_periods(panel.dates, self.config.test_years)
        return walk_forward_splits(panel.dates, panel.target_end[self.horizon], periods)

    @abstractmethod
    def evaluate(self, panel: Panel) -> Evaluation: ...

    def skill(self, evaluation: Evaluation) -> dict[str, Any] | None:
        """The card's ``skill`` record: whether the model beat its strongest baseline on the walk-forward test, in
        one sentence (``training/evaluation/skill.py``); None for a model without a baseline (the regime HMM)."""
        return skill_record(evaluation.task, evaluation.metrics, evaluation.baselines)

    @abstractmethod
    def fit(self, panel: Panel) -> Fitted: ...

    @abstractmethod
    def save(self, fitted: Fitted, metadata: dict[str, Any], labels: dict[str, str]) -> Any:
        """Save to the BentoML model store with the given card and labels; return the bentoml Model."""


class TabularTrainer(Trainer):
    """A supervised model on the feature matrix: the pooled LightGBM and RandomForest models."""

    @abstractmethod
    def labels(self, panel: Panel) -> np.ndarray:
        """The training target of every panel row (NaN where it is not known yet)."""

    @abstractmethod
    def fit_model(self, features: np.ndarray, target: np.ndarray) -> Any: ...

    @abstractmethod
    def predict(self, model: Any, features: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def baseline_predictions(self, panel: Panel, split: Split, target: np.ndarray) -> dict[str, np.ndarray]:
        """Each baseline's prediction for the test rows of ``split``, using training information only."""

    @abstractmethod
    def score(self, actual: np.ndarray, prediction: np.ndarray, baselines: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics of ``prediction``; ``baselines`` are the baselines' predictions for the same rows."""

    def score_all(self, actual: np.ndarray, prediction: np.ndarray, baselines: dict[str, np.ndarray]) -> Scores:
        """Metrics of the model and of every baseline on the same rows: where the actual and every forecast are
        finite. A trainer whose metrics need more (volatility: > 0) overrides this."""
        rows = same_rows(actual, {MODEL: prediction, **baselines})
        keep = rows.mask
        actual, prediction = actual[keep], prediction[keep]
        baselines = {name: values[keep] for name, values in baselines.items()}
        return Scores(
            self.score(actual, prediction, baselines),
            {name: self.score(actual, values, baselines) for name, values in baselines.items()},
            rows,
        )

    @abstractmethod
    def importances(self, model: Any) -> np.ndarray: ...

    def hyperparameters(self) -> dict[str, Any]:
        return {}

    def model_extra(self, model: Any) -> dict[str, Any]:
        return {}

    def evaluate(self, panel: Panel) -> Evaluation:
        target = self.labels(panel)
        records, folds, importances = [], [], []
        for split in self.splits(panel):
            train = split.train[np.isfinite(target[split.train])]
            test = split.test[np.isfinite(target[split.test])]
            model = self.fit_model(panel.features[train], target[train])
            prediction = self.predict(model, panel.features[test])
            baselines = self.baseline_predictions(panel, split, target)
            keep = np.isfinite(target[split.test])
            baselines = {name: values[keep] for name, values in baselines.items()}
            importances.append(self.importances(model))
            fold: dict[str, Any] = dict(split.describe(panel.dates))
            scores = self.score_all(target[test], prediction, baselines)
            fold["metrics"], fold["baselines"] = scores.model, scores.baselines
            fold["scored_rows"] = scores.rows.describe()
            folds.append(fold)
            records.append(
                pd.DataFrame(
                    {
                        "date": panel.dates[test],
                        "symbol": panel.symbols[test],
                        "fold": split.fold,
                        "actual": target[test],
                        "prediction": prediction,
                        **{f"baseline_{n}": p for n, p in baselines.items()},
                    }
                )
            )
        predictions = pd.concat(records, ignore_index=True)
        actual = predictions["actual"].to_numpy()
        pooled = {
            c.removeprefix("baseline_"): predictions[c].to_numpy()
            for c in predictions.columns
            if c.startswith("baseline_")
        }
        mean_importance = np.mean(importances, axis=0)
        scores = self.score_all(actual, predictions["prediction"].to_numpy(), pooled)
        return Evaluation(
            model=self.name,
            task=self.task,
            primary_metric=self.primary_metric,
            higher_is_better=self.higher_is_better,
            metrics=scores.model,
            baselines=scores.baselines,
            folds=folds,
            predictions=predictions,
            extras={
                "feature_importance": dict(zip(panel.spec.names, mean_importance.tolist(), strict=True)),
                "scored_rows": scores.rows.describe(),
            },
        )

    def fit(self, panel: Panel) -> Fitted:
        target = self.labels(panel)
        rows = np.flatnonzero(np.isfinite(target))
        model = self.fit_model(panel.features[rows], target[rows])
        return Fitted(model=model, hyperparameters=self.hyperparameters(), extra=self.model_extra(model))
