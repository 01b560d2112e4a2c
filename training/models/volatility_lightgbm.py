"""``volatility_lightgbm``: LightGBM (gamma loss) forecast of realized volatility over the horizon, learnt as the
correction to a baseline read from the feature row (``bentos/volatility_anchor.py``)."""

from __future__ import annotations

from typing import Any, ClassVar

import lightgbm as lgb
import numpy as np

from bentos import volatility_anchor
from features import DEFAULT_SPEC
from training.dataset import Panel
from training.evaluation.baselines import ewma_volatility, garch_volatility, har_volatility
from training.evaluation.metrics import volatility_metrics
from training.evaluation.splits import Split
from training.models.lgbm import BoosterRegressor, booster_params, train_booster
from training.models.trainer import MODEL, Scores, TabularTrainer


class VolatilityLightGBM(BoosterRegressor, TabularTrainer):
    """Annualised realized volatility of the next ``horizon`` days; gamma loss suits a positive, skewed target."""

    name: ClassVar[str] = "volatility_lightgbm"
    task: ClassVar[str] = "volatility_regression"
    target: ClassVar[str] = "forward_realized_volatility"
    primary_metric: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False

    def labels(self, panel: Panel) -> np.ndarray:
        target = panel.forward_volatility.copy()
        target[target <= 0] = np.nan  # a flat week has no volatility to learn from under a gamma loss
        return target

    def params(self) -> dict[str, Any]:
        return booster_params(self.config, "gamma")

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "init_score": volatility_anchor.METHOD}

    def fit_model(self, features: np.ndarray, target: np.ndarray) -> lgb.Booster:
        """Trees on the correction: the anchor's log is every row's initial raw score."""
        anchor = volatility_anchor.log_anchor(features, DEFAULT_SPEC.names)
        return train_booster(features, target, self.params(), self.config.lgbm_rounds, init_score=anchor)

    def predict(self, model: lgb.Booster, features: np.ndarray) -> np.ndarray:
        raw = np.asarray(model.predict(features, num_threads=1, raw_score=True))
        return np.exp(raw + volatility_anchor.log_anchor(features, DEFAULT_SPEC.names))

    def model_extra(self, model: lgb.Booster) -> dict[str, Any]:
        return {"anchor": volatility_anchor.card(), "output": "exp(booster raw score + log anchor)"}

    def baseline_predictions(self, panel: Panel, split: Split, target: np.ndarray) -> dict[str, np.ndarray]:
        return {
            "ewma": ewma_volatility(panel, split.test),
            "garch": garch_volatility(panel, split.train, split.test, self.horizon),
            "har": har_volatility(panel, split.train, split.test, target),
        }

    def score(self, actual: np.ndarray, prediction: np.ndarray, baselines: dict[str, np.ndarray]) -> dict[str, float]:
        return self.score_all(actual, prediction, baselines).model

    def score_all(self, actual: np.ndarray, prediction: np.ndarray, baselines: dict[str, np.ndarray]) -> Scores:
        """The model, EWMA and GARCH on the same rows: where the realized volatility and all three are finite and
        > 0 (QLIKE takes logs)."""
        scores = volatility_metrics(actual, {MODEL: prediction, **baselines})
        model = scores.metrics.pop(MODEL)
        return Scores(model, scores.metrics, scores.rows)
