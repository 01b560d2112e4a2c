"""One runner per served model: it owns the stored model, checks its card, and predicts vectorised.

Runners know nothing of HTTP. Tabular runners take feature rows computed by the shared pipeline
(``features``) and return one prediction per row; the regime and price runners take what their models need.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from dataclasses import dataclass
from typing import Any, ClassVar

import bentoml
import numpy as np
import pandas as pd

from bentos.prophet_model import ProphetModels
from bentos.regime_model import RegimeModel
from features import DEFAULT_SPEC


class ModelMismatchError(RuntimeError):
    """A stored model cannot be served by this code (its FeatureSpec differs, or its card is unusable)."""


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


class Runner:
    """Base: identity and card of a stored model, and the FeatureSpec check."""

    uses_features: ClassVar[bool] = True

    def __init__(self, model: bentoml.Model):
        self.identity = ModelIdentity(model.tag.name, str(model.tag.version))
        self.card: dict[str, Any] = dict(model.info.metadata)
        if self.uses_features:
            self._check_feature_spec()
        self.horizon = int(self.card.get("horizon", 1))

    def _check_feature_spec(self) -> None:
        trained = self.card.get("feature_spec_hash")
        if trained is None:
            raise ModelMismatchError(
                f"{self.identity.tag} has no FeatureSpec hash in its card, so nothing guarantees its features "
                "match this code; retrain it with `mlops train` and promote the new version"
            )
        if trained != DEFAULT_SPEC.version_hash or self.card.get("feature_names") != list(DEFAULT_SPEC.names):
            raise ModelMismatchError(
                f"{self.identity.tag} was trained on FeatureSpec {trained}, but this code computes FeatureSpec "
                f"{DEFAULT_SPEC.version_hash}: serving it would feed it features it never saw. Retrain "
                "(`mlops train`), promote the new version and rebuild, or serve the code version it was trained with."
            )


class BoosterRunner(Runner):
    """A LightGBM booster: return and volatility regressions."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        self.booster = bentoml.lightgbm.load_model(model)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(np.atleast_2d(features), num_threads=1))


class ForestRunner(Runner):
    """The scikit-learn RandomForest return regression."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        self.forest = bentoml.sklearn.load_model(model)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.forest.predict(np.atleast_2d(features)))


class DirectionRunner(BoosterRunner):
    """The booster's raw P(up), Platt-calibrated with the parameters recorded in the card."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        try:
            calibration = self.card["details"]["calibration"]
            self.slope = float(calibration["slope"])
            self.intercept = float(calibration["intercept"])
            self.threshold = float(self.card["details"]["decision_threshold"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelMismatchError(f"{self.identity.tag} has no usable calibration in its card: {error}") from error

    def predict(self, features: np.ndarray) -> np.ndarray:
        raw = np.clip(super().predict(features), 1e-6, 1 - 1e-6)
        return np.asarray(1.0 / (1.0 + np.exp(-(self.slope * np.log(raw / (1 - raw)) + self.intercept))))


class RegimeRunner(Runner):
    """The Gaussian HMM: filtered regime probabilities at the last bar of a window."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        self.model = RegimeModel.load(model.path)
        self.names = list(self.model.state_names)
        self.durations = np.asarray(self.model.expected_durations())

    def predict(self, feature_rows: np.ndarray) -> tuple[int, np.ndarray]:
        """Regime index and probabilities at the last row, from the window's complete feature rows."""
        observations = self.model.observations(feature_rows, list(DEFAULT_SPEC.names))
        if observations.shape[0] == 0:
            raise ValueError("the window has no complete feature row to decode a regime from")
        probabilities = np.asarray(self.model.posterior_last(observations))
        return int(np.argmax(probabilities)), probabilities


class PriceRunner(Runner):
    """Per-symbol Prophet forecasts, anchored to the last close. Prophet reads no features."""

    uses_features = False

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        self.models = ProphetModels.load(model.path)

    def forecast(self, symbol: str, periods: int, recent: pd.DataFrame | None) -> pd.DataFrame:
        return self.models.forecast(symbol, periods, recent=recent)


RUNNERS: dict[str, type[Runner]] = {
    "return_lightgbm": BoosterRunner,
    "return_random_forest": ForestRunner,
    "direction_lightgbm": DirectionRunner,
    "volatility_lightgbm": BoosterRunner,
    "price_prophet": PriceRunner,
    "regime_hmm": RegimeRunner,
}


def load_runner(name: str, model: bentoml.Model) -> Runner:
    """The runner of a served model; raises :class:`ModelMismatchError` naming the model when it cannot serve."""
    try:
        return RUNNERS[name](model)
    except ModelMismatchError:
        raise
    except Exception as error:
        raise ModelMismatchError(f"cannot load {model.tag} ({name}): {type(error).__name__}: {error}") from error
