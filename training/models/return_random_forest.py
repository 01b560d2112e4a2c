"""``return_random_forest``: RandomForest regression of the forward log return over the horizon.

Each tree grows on a bootstrap sample as large as its training rows, up to ``TrainingConfig.rf_tree_rows`` (1
million): past it, on a universe's pooled panel, a tree draws that many rows (scikit-learn's ``max_samples``) and the
card's ``tree_rows`` says so. A tree's cost grows with the rows it is grown on, and a forest fit is one task, the
longest of a universe's training (``benchmarks/bench_scale.py``): single-threaded, the quick forest took about 300
s a fold on 200 symbols x 15 years, so the 8 million rows of a fit at ``max_training_rows`` would take about ten
times that, and the cap holds it near 1.3 times. Fewer rows than the cap leave the forest exactly as before (the
same draws as scikit-learn's default; tested).
"""

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
        parameters = self.hyperparameters()
        cap = self.config.rf_tree_rows
        if cap is not None and len(target) > cap:
            parameters["max_samples"] = cap  # each tree's bootstrap sample (see the module's docstring)
        model = RandomForestRegressor(n_jobs=fit_threads(), **parameters)  # same trees for any n_jobs
        model.fit(features, target)
        model.set_params(n_jobs=1)  # serving predicts small batches, where one thread is fastest
        return model

    def model_extra(self, model: RandomForestRegressor) -> dict[str, Any]:
        if model.max_samples is None:
            return {}
        return {"tree_rows": {"bootstrap_rows": int(model.max_samples), "cap": "TrainingConfig.rf_tree_rows"}}

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
