"""LightGBM settings shared by the three LightGBM models, and the booster methods of the two regressors."""

from __future__ import annotations

from typing import Any, ClassVar

import bentoml
import lightgbm as lgb
import numpy as np

from training.config import TrainingConfig
from training.models.execution import fit_threads


def booster_params(config: TrainingConfig, objective: str, **extra: Any) -> dict[str, Any]:
    """Strongly regularised trees: daily financial targets are mostly noise.

    No ``num_threads``: a fit takes the threads of where it runs (``fit_threads``); the trees are the same.
    """
    return {
        "objective": objective,
        "learning_rate": config.lgbm_learning_rate,
        "num_leaves": config.lgbm_leaves,
        "min_data_in_leaf": config.lgbm_min_child_samples,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
        **extra,
    }


def train_booster(
    features: np.ndarray,
    target: np.ndarray,
    params: dict[str, Any],
    rounds: int,
    init_score: np.ndarray | None = None,
) -> lgb.Booster:
    """``init_score``: each row's starting raw score, which the trees then correct (not part of the booster: a
    prediction adds it back)."""
    dataset = lgb.Dataset(features, label=target, init_score=init_score, free_raw_data=True)
    return lgb.train({**params, "num_threads": fit_threads()}, dataset, num_boost_round=rounds)


def gain_importance(booster: lgb.Booster) -> np.ndarray:
    """Share of the total split gain per feature."""
    gain = booster.feature_importance(importance_type="gain").astype(float)
    total = gain.sum()
    return gain / total if total > 0 else gain


class BoosterRegressor:
    """A trainer's model methods for a plain LightGBM booster (the return and volatility regressors).

    Put it first among the bases, so that its methods are the trainer's; the trainer gives its ``params``.
    """

    name: ClassVar[str]
    config: TrainingConfig

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def hyperparameters(self) -> dict[str, Any]:
        return {**self.params(), "num_boost_round": self.config.lgbm_rounds}

    def fit_model(self, features: np.ndarray, target: np.ndarray) -> lgb.Booster:
        return train_booster(features, target, self.params(), self.config.lgbm_rounds)

    def predict(self, model: lgb.Booster, features: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(features, num_threads=1))

    def importances(self, model: lgb.Booster) -> np.ndarray:
        return gain_importance(model)

    def save(self, fitted: Any, metadata: dict[str, Any], labels: dict[str, str]) -> bentoml.Model:
        return bentoml.lightgbm.save_model(self.name, fitted.model, metadata=metadata, labels=labels)
