"""``return_lightgbm``: LightGBM regression of the forward log return over the horizon."""

from __future__ import annotations

from typing import Any, ClassVar

import bentoml
import lightgbm as lgb
import numpy as np

from training.dataset import Panel
from training.evaluation.metrics import regression_metrics
from training.evaluation.splits import Split
from training.models.lgbm import booster_params, gain_importance, train_booster
from training.models.trainer import Fitted, TabularTrainer


class ReturnTrainer(TabularTrainer):
    """Shared by the two return regressors: target, baselines (zero, historical mean) and metrics."""

    task: ClassVar[str] = "return_regression"
    target: ClassVar[str] = "forward_log_return"
    primary_metric: ClassVar[str] = "r2_vs_mean"
    higher_is_better: ClassVar[bool] = True

    def labels(self, panel: Panel) -> np.ndarray:
        return panel.forward_return

    def baseline_predictions(self, panel: Panel, split: Split, target: np.ndarray) -> dict[str, np.ndarray]:
        train_mean = float(np.nanmean(target[split.train]))
        return {
            "zero": np.zeros(split.test.size),
            "historical_mean": np.full(split.test.size, train_mean),
        }

    def score(self, actual: np.ndarray, prediction: np.ndarray, baselines: dict[str, np.ndarray]) -> dict[str, float]:
        return regression_metrics(actual, prediction, baselines["historical_mean"])


class ReturnLightGBM(ReturnTrainer):
    name: ClassVar[str] = "return_lightgbm"

    def params(self) -> dict[str, Any]:
        return booster_params(self.config, "huber", alpha=0.02)

    def hyperparameters(self) -> dict[str, Any]:
        return {**self.params(), "num_boost_round": self.config.lgbm_rounds}

    def fit_model(self, features: np.ndarray, target: np.ndarray) -> lgb.Booster:
        return train_booster(features, target, self.params(), self.config.lgbm_rounds)

    def predict(self, model: lgb.Booster, features: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(features, num_threads=1))

    def importances(self, model: lgb.Booster) -> np.ndarray:
        return gain_importance(model)

    def save(self, fitted: Fitted, metadata: dict[str, Any], labels: dict[str, str]) -> bentoml.Model:
        return bentoml.lightgbm.save_model(self.name, fitted.model, metadata=metadata, labels=labels)
