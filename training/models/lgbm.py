"""LightGBM settings shared by the three LightGBM models."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np

from training.config import TrainingConfig


def booster_params(config: TrainingConfig, objective: str, **extra: Any) -> dict[str, Any]:
    """Strongly regularised trees: daily financial targets are mostly noise."""
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
        "num_threads": 2,
        "verbose": -1,
        **extra,
    }


def train_booster(features: np.ndarray, target: np.ndarray, params: dict[str, Any], rounds: int) -> lgb.Booster:
    dataset = lgb.Dataset(features, label=target, free_raw_data=True)
    return lgb.train(params, dataset, num_boost_round=rounds)


def gain_importance(booster: lgb.Booster) -> np.ndarray:
    """Share of the total split gain per feature."""
    gain = booster.feature_importance(importance_type="gain").astype(float)
    total = gain.sum()
    return gain / total if total > 0 else gain
