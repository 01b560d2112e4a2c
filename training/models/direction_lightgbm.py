"""``direction_lightgbm``: LightGBM classifier of next-day up/down with a Platt-calibrated P(up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import bentoml
import lightgbm as lgb
import numpy as np
from sklearn.linear_model import LogisticRegression

from bentos.direction_calibration import PlattCalibration, calibrate, logit
from training.dataset import Panel
from training.evaluation.baselines import majority_probability
from training.evaluation.metrics import classification_metrics
from training.evaluation.splits import Split
from training.models.lgbm import booster_params, gain_importance, train_booster
from training.models.trainer import Fitted, TabularTrainer

DECISION_THRESHOLD = 0.5


__all__ = ["DECISION_THRESHOLD", "CalibratedBooster", "DirectionLightGBM", "calibrate"]


@dataclass
class CalibratedBooster:
    """A booster's raw P(up) mapped through the service's Platt calibration (bentos/direction_calibration.py)."""

    booster: lgb.Booster
    calibration: PlattCalibration

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.calibration(np.asarray(self.booster.predict(features, num_threads=1)))


class DirectionLightGBM(TabularTrainer):
    """Trees on the earlier part of the training window, Platt calibration on its most recent part."""

    name: ClassVar[str] = "direction_lightgbm"
    task: ClassVar[str] = "direction_classification"
    target: ClassVar[str] = "next_day_direction"
    primary_metric: ClassVar[str] = "log_loss"
    higher_is_better: ClassVar[bool] = False

    @property
    def horizon(self) -> int:
        return 1

    def labels(self, panel: Panel) -> np.ndarray:
        return panel.direction

    def params(self) -> dict[str, Any]:
        return booster_params(self.config, "binary")

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **self.params(),
            "num_boost_round": self.config.lgbm_rounds,
            "calibration": "platt",
            "calibration_fraction": self.config.calibration_fraction,
            "decision_threshold": DECISION_THRESHOLD,
        }

    def fit_model(self, features: np.ndarray, target: np.ndarray) -> CalibratedBooster:
        # rows arrive in date order; the last fraction calibrates, one row apart so no label straddles both
        split = int(len(target) * (1 - self.config.calibration_fraction))
        booster = train_booster(features[: split - 2], target[: split - 2], self.params(), self.config.lgbm_rounds)
        raw = np.asarray(booster.predict(features[split:], num_threads=1))
        platt = LogisticRegression(C=1.0)
        platt.fit(logit(raw).reshape(-1, 1), target[split:].astype(int))
        return CalibratedBooster(booster, PlattCalibration(float(platt.coef_[0, 0]), float(platt.intercept_[0])))

    def predict(self, model: CalibratedBooster, features: np.ndarray) -> np.ndarray:
        return model.predict(features)

    def importances(self, model: CalibratedBooster) -> np.ndarray:
        return gain_importance(model.booster)

    def model_extra(self, model: CalibratedBooster) -> dict[str, Any]:
        return {
            "calibration": model.calibration.card(),
            "decision_threshold": DECISION_THRESHOLD,
            "output": "calibrated P(up) = sigmoid(slope * logit(booster P) + intercept)",
        }

    def baseline_predictions(self, panel: Panel, split: Split, target: np.ndarray) -> dict[str, np.ndarray]:
        return {"majority": np.full(split.test.size, majority_probability(target[split.train]))}

    def score(self, actual: np.ndarray, prediction: np.ndarray, baselines: dict[str, np.ndarray]) -> dict[str, float]:
        return classification_metrics(actual, prediction, DECISION_THRESHOLD)

    def save(self, fitted: Fitted, metadata: dict[str, Any], labels: dict[str, str]) -> bentoml.Model:
        return bentoml.lightgbm.save_model(self.name, fitted.model.booster, metadata=metadata, labels=labels)
