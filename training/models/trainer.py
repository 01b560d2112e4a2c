"""The shape every trainer shares: walk-forward evaluation, a final fit on the whole snapshot, a save."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.metrics import SameRows, same_rows
from training.evaluation.quant import quant_figures
from training.evaluation.skill import skill_record
from training.evaluation.splits import Split, walk_forward_splits, window_start, yearly_test_periods
from training.evaluation.walk_forward import Evaluation
from training.models.execution import IN_PROCESS, Execution

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
    """A final model with what its card needs to describe it (``extra``, the card's ``details``), and what only the
    training report draws (``report``: never stored, since a card is read whole whenever the model is loaded)."""

    model: Any
    hyperparameters: dict[str, Any]
    extra: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict)


class Trainer(ABC):
    """One model of the product: its store name, task and target, and how to evaluate, fit and save it."""

    name: ClassVar[str]
    task: ClassVar[str]
    target: ClassVar[str]
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[bool]
    pooled: ClassVar[bool] = True
    pooling: ClassVar[str] = "one model pooled across the snapshot's symbols (its features are scale-free)"

    def __init__(self, config: TrainingConfig, execution: Execution | None = None):
        """``execution``: where the trainer's tasks run (``training/models/execution.py``); here by default."""
        self.config = config
        self.execution = execution or IN_PROCESS

    def __getstate__(self) -> dict[str, Any]:
        """A trainer shipped to a worker as part of a task leaves the run's client behind."""
        return {**self.__dict__, "execution": IN_PROCESS}

    @property
    def horizon(self) -> int:
        return self.config.horizon

    def splits(self, panel: Panel) -> list[Split]:
        periods = yearly_test_periods(panel.dates, self.config.test_years)
        return walk_forward_splits(
            panel.dates, panel.target_end[self.horizon], periods, train_years=self.config.train_years
        )

    @abstractmethod
    def evaluate(self, panel: Panel) -> Evaluation: ...

    def skill(self, evaluation: Evaluation) -> dict[str, Any] | None:
        """The card's ``skill`` record: whether the model beat its strongest baseline on the walk-forward test, in
        one sentence (``training/evaluation/skill.py``); None for a model without a baseline (the regime HMM)."""
        return skill_record(evaluation.task, evaluation.metrics, evaluation.baselines)

    @abstractmethod
    def fit(self, panel: Panel) -> Fitted: ...

    def evaluate_and_fit(self, panel: Panel) -> tuple[Evaluation, Fitted, float, float]:
        """The walk-forward evaluation and the final fit, with the seconds each took. A trainer whose work splits
        into tasks overrides this to run all of them at once (its seconds are then the tasks' own, summed)."""
        started = time.perf_counter()
        evaluation = self.evaluate(panel)
        evaluated = time.perf_counter()
        fitted = self.fit(panel)
        return evaluation, fitted, evaluated - started, time.perf_counter() - evaluated

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

    def evaluate_fold(self, panel: Panel, fold: int) -> tuple[dict[str, Any], pd.DataFrame, np.ndarray]:
        """One walk-forward fold: fit on its training rows, predict its test rows, score against the baselines.

        Returns the fold's card entry, its prediction rows and the model's feature importances.
        """
        split = self.splits(panel)[fold]
        target = self.labels(panel)
        train = self.training_rows(split.train[np.isfinite(target[split.train])], fold)
        test = split.test[np.isfinite(target[split.test])]
        model = self.fit_model(panel.features[train], target[train])
        prediction = self.predict(model, panel.features[test])
        baselines = self.baseline_predictions(panel, split, target)
        keep = np.isfinite(target[split.test])
        baselines = {name: values[keep] for name, values in baselines.items()}
        described: dict[str, Any] = dict(split.describe(panel.dates))
        if train.size < np.isfinite(target[split.train]).sum():
            described["n_train_sampled"] = int(train.size)
        scores = self.score_all(target[test], prediction, baselines)
        described["metrics"], described["baselines"] = scores.model, scores.baselines
        described["scored_rows"] = scores.rows.describe()
        records = pd.DataFrame(
            {
                "date": panel.dates[test],
                "symbol": panel.symbols[test],
                "fold": split.fold,
                "actual": target[test],
                "realised_return": panel.forward_log_returns(self.horizon)[test],
                "prediction": prediction,
                **{f"baseline_{n}": p for n, p in baselines.items()},
            }
        )
        return described, records, self.importances(model)

    def _task(self, panel: Panel, fold: int | None) -> tuple[Any, float]:
        """One task of the model (a fold, or the final fit when ``fold`` is None) and its seconds."""
        started = time.perf_counter()
        result = self.fit(panel) if fold is None else self.evaluate_fold(panel, fold)
        return result, time.perf_counter() - started

    def _run(self, panel: Panel, with_fit: bool) -> dict[str, tuple[Any, float]]:
        shared = self.execution.shared(panel)
        tasks: dict[str, tuple[Any, ...]] = {f"fold-{i}": (shared, i) for i in range(len(self.splits(panel)))}
        if with_fit:
            tasks["fit"] = (shared, None)
        return self.execution.run(self.name, self._task, tasks)

    def evaluate(self, panel: Panel) -> Evaluation:
        return self._evaluation(panel, [r for r, _ in self._run(panel, with_fit=False).values()])

    def evaluate_and_fit(self, panel: Panel) -> tuple[Evaluation, Fitted, float, float]:
        """Every fold and the final fit as tasks at once (``training/models/execution.py``); the seconds are the
        folds' summed and the fit's."""
        done = self._run(panel, with_fit=True)
        fitted, fit_seconds = done.pop("fit")
        evaluation = self._evaluation(panel, [r for r, _ in done.values()])
        return evaluation, fitted, sum(s for _, s in done.values()), fit_seconds

    def _evaluation(self, panel: Panel, folds: list[tuple[dict[str, Any], pd.DataFrame, np.ndarray]]) -> Evaluation:
        """The pooled evaluation of the folds' results, in fold order."""
        predictions = pd.concat([records for _, records, _ in folds], ignore_index=True)
        actual = predictions["actual"].to_numpy()
        pooled = {
            c.removeprefix("baseline_"): predictions[c].to_numpy()
            for c in predictions.columns
            if c.startswith("baseline_")
        }
        mean_importance = np.mean([importance for _, _, importance in folds], axis=0)
        scores = self.score_all(actual, predictions["prediction"].to_numpy(), pooled)
        started = time.perf_counter()
        quant, quant_series = quant_figures(self.task, predictions, self.horizon)
        quant_seconds = time.perf_counter() - started
        return Evaluation(
            model=self.name,
            task=self.task,
            primary_metric=self.primary_metric,
            higher_is_better=self.higher_is_better,
            metrics=scores.model,
            baselines=scores.baselines,
            folds=[described for described, _, _ in folds],
            predictions=predictions,
            extras={
                "feature_importance": dict(zip(panel.spec.names, mean_importance.tolist(), strict=True)),
                "scored_rows": scores.rows.describe(),
                "quant_seconds": quant_seconds,
            },
            quant=quant,
            quant_series=quant_series,
        )

    def training_rows(self, rows: np.ndarray, fold: int | None) -> np.ndarray:
        """``rows`` (date-ordered panel rows), or past ``config.max_training_rows`` a uniform sample of that many in
        the same order, seeded by the config's seed and the fold, so every run draws the same."""
        limit = self.config.max_training_rows
        if limit is None or rows.size <= limit:
            return rows
        rng = np.random.default_rng([self.config.seed, 0 if fold is None else fold + 1])
        return np.sort(rng.choice(rows, size=limit, replace=False))

    def fit(self, panel: Panel) -> Fitted:
        target = self.labels(panel)
        first = window_start(panel.dates.max() + np.timedelta64(1, "D"), self.config.train_years)
        known = np.flatnonzero(np.isfinite(target) & (panel.dates >= first))
        rows = self.training_rows(known, None)
        model = self.fit_model(panel.features[rows], target[rows])
        extra = self.model_extra(model)
        if self.config.train_years is not None:
            extra["train_years"] = self.config.train_years  # a rolling window: the folds' train dates show it too
        if rows.size < known.size:
            extra["training_rows"] = {"used": int(rows.size), "sampled_from": int(known.size), "sample": "uniform"}
        return Fitted(model=model, hyperparameters=self.hyperparameters(), extra=extra)
