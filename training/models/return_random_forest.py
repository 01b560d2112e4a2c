"""``return_random_forest``: RandomForest regression of the forward log return over the horizon."""

from __future__ import annotations

from typing import Any, ClassVar

import bentoml
import numpy as np
from sklearn.ensemble import RandomForestRegressor

from bentos.forest_model import CUSTOM_OBJECT, FlatForest, forest_nodes
from training.models.execution import fit_threads
from training.models.return_lightgbm import ReturnTrainer
from training.models.trainer import Fitted


class ReturnRandomForest(ReturnTrainer):
    name: ClassVar[str] = "return_random_forest"

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "n_estimators": self.config.rf_trees,
            "max_depth": self.config.rf_max_depth,
            "min_samples_leaf": self.config.rf_min_samples_leaf,
            "max_features": 0.5,
            "random_state": self.config.seed,
        }

    def fit_model(self, features: np.ndarray, target: np.ndarray) -> RandomForestRegressor:
        model = RandomForestRegressor(n_jobs=fit_threads(), **self.hyperparameters())  # same trees for any n_jobs
        model.fit(features, target)
        model.set_params(n_jobs=1)  # serving predicts small batches, where one thread is fastest
        return model

    def predict(self, model: RandomForestRegressor, features: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict(features))

    def importances(self, model: RandomForestRegressor) -> np.ndarray:
        return np.asarray(model.feature_importances_)

    def save(self, fitted: Fitted, metadata: dict[str, Any], labels: dict[str, str]) -> bentoml.Model:
        # the service predicts from the flat nodes (no scikit-learn in its process): they must give the forest's answers
        nodes = forest_nodes(fitted.model)
        FlatForest(nodes).check(fitted.model)
        return bentoml.sklearn.save_model(
            self.name, fitted.model, metadata=metadata, labels=labels, custom_objects={CUSTOM_OBJECT: nodes}
        )
