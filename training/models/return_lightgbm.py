"""``return_lightgbm``: LightGBM regression of the forward log return over the horizon."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from training.dataset import Panel
from training.evaluation.metrics import regression_metrics
from training.evaluation.splits import Split
from training.models.lgbm import BoosterRegressor, booster_params
from training.models.trainer import TabularTrainer


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


class ReturnLightGBM(BoosterRegressor, ReturnTrainer):
    name: ClassVar[str] = "return_lightgbm"

    def params(self) -> dict[str, Any]:
        return booster_params(self.config, "huber", alpha=0.02)
