"""One runner per served model: it owns the stored model, checks its card, and predicts vectorised.

Runners know nothing of HTTP. Tabular runners take feature rows computed by the shared pipeline
(``features``) and return one prediction per row; the regime and price runners take what their models need.
"""

from __future__ import annotations

import math
import os
import sys

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from dataclasses import dataclass
from typing import Any, ClassVar

import bentoml
import numpy as np
import pandas as pd

from bentos import volatility_anchor
from bentos.direction_calibration import PlattCalibration
from bentos.forest_model import CUSTOM_OBJECT, FlatForest, forest_nodes
from bentos.prophet_model import ModelFileError, ProphetModels
from bentos.regime_model import RegimeModel
from features import DEFAULT_SPEC
from features.catalog import Runtime, model_kind


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


#: Prediction parameters of every booster call: one thread (LightGBM's default threads cost milliseconds a row).
BOOSTER_PREDICT_PARAMETERS: dict[str, Any] = {"num_threads": 1}


class BoosterRunner(Runner):
    """A LightGBM booster (return and volatility regressions), predicted through the ``lightgbm`` package.

    Issue 13 removed the hand-written path that served boosters before: a ctypes binding to LightGBM's C library
    (``NativeBooster``, last in commit 10c5af6), written to spare the worker ``import lightgbm``, which imports
    scikit-learn and scipy.stats. Measured side by side (``benchmarks/bench_serving_paths.py``, figures in
    ``benchmarks/results/serving_paths.md``), it predicted one row in 0.020 ms against ``Booster.predict``'s
    0.090 ms in process, but no figure a user feels gained the 2x a hand-written path must show: predict_direction's
    p50 over HTTP 1.08x (6.38 against 6.88 ms), predict_all's 1.07x, a batch job's throughput 1.00x (many rows take
    the same C call), the worker's cold start 1.33x (6.5 against 8.7 s; 1.64x in a run on a loaded VM).
    """

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        if model.info.module != "bentoml.lightgbm":
            raise ModelMismatchError(
                f"{self.identity.tag} is not a LightGBM model saved by bentoml.lightgbm (module {model.info.module!r})"
            )
        self.booster = bentoml.lightgbm.load_model(model)
        if self.booster.num_model_per_iteration() != 1:
            raise ModelMismatchError(f"{self.identity.tag} predicts more than one value a row; one is served")

    def predict(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self.booster.predict(np.atleast_2d(features), **BOOSTER_PREDICT_PARAMETERS), dtype=np.float64)


class ForestRunner(Runner):
    """The scikit-learn RandomForest return regression, predicted from its flat nodes (bentos/forest_model.py,
    whose docstring has issue 13's decision to keep them, with figures).

    A forest stored without the nodes (before they were stored) is unpickled with scikit-learn and flattened at load.
    Large batches (the batch CLI) go to scikit-learn's own predict, loaded on the first one: per row it is faster
    than walking every tree of every row at once, and its answers are the same.
    """

    #: Up to this many rows, the flat nodes predict; more go to scikit-learn.
    FLAT_ROWS = 64

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        self._model = model
        self._forest: Any = None
        nodes = model.custom_objects.get(CUSTOM_OBJECT)
        if nodes is None:
            self.flat = FlatForest(forest_nodes(self.forest))
            self.flat.check(self.forest)
        else:
            self.flat = FlatForest(nodes)

    @property
    def forest(self) -> Any:
        """The stored scikit-learn forest (imports scikit-learn on first use)."""
        return self.load_batch_model()

    def load_batch_model(self) -> Any:
        """Load (once) the scikit-learn forest that predicts batches of more than ``FLAT_ROWS`` rows, and return it."""
        if self._forest is None:
            try:
                self._forest = bentoml.sklearn.load_model(self._model)
            except Exception as error:
                raise ModelMismatchError(
                    f"cannot load {self._model.tag} (return_random_forest): {type(error).__name__}: {error}"
                ) from error
        return self._forest

    def predict(self, features: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(features)
        if rows.shape[0] <= self.FLAT_ROWS:
            return self.flat.predict(rows)
        return np.asarray(self.forest.predict(rows))


class DirectionRunner(BoosterRunner):
    """The booster's raw P(up), Platt-calibrated with the card's parameters (bentos/direction_calibration.py, the
    trainer's calibration)."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        try:
            details = self.card["details"]
            self.calibration = PlattCalibration.from_card(details["calibration"])
            self.threshold = float(details["decision_threshold"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelMismatchError(f"{self.identity.tag} has no usable calibration in its card: {error}") from error

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.calibration(super().predict(features))


class VolatilityRunner(BoosterRunner):
    """The booster's correction applied to the anchor read from the feature row (bentos/volatility_anchor.py, the
    trainer's): ``exp(raw score + log anchor)``."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        try:
            self.columns = volatility_anchor.from_card(self.card["details"])
        except (KeyError, TypeError, ValueError) as error:
            raise ModelMismatchError(
                f"{self.identity.tag} has no anchor in its card ({error}): retrain it with `mlops train`"
            ) from error

    def predict(self, features: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(features)
        raw = self.booster.predict(rows, raw_score=True, **BOOSTER_PREDICT_PARAMETERS)
        anchor = volatility_anchor.log_anchor(rows, DEFAULT_SPEC.names, self.columns)
        return np.asarray(np.exp(raw + anchor), dtype=np.float64)


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
        """A symbol's model is read on its first forecast (``ProphetModels.load``): a damaged file fails that
        symbol's forecasts, named with the model's tag, and no other method or symbol."""
        try:
            return self.models.forecast(symbol, periods, recent=recent)
        except ModelFileError as error:
            raise ModelMismatchError(f"{self.identity.tag} cannot forecast {symbol}: {error}") from error


#: the runner of each way of serving a model (features.catalog names each model's)
RUNNERS: dict[Runtime, type[Runner]] = {
    "booster": BoosterRunner,
    "volatility": VolatilityRunner,
    "direction": DirectionRunner,
    "forest": ForestRunner,
    "regime": RegimeRunner,
    "prophet": PriceRunner,
}


def load_runner(name: str, model: bentoml.Model) -> Runner:
    """The runner of a served model; raises :class:`ModelMismatchError` naming the model when it cannot serve.

    The model is named on stderr before a native library reads its files: a damaged file can crash the process
    (LightGBM segfaults on a truncated booster) and then that line, and faulthandler's traceback, are the last words.
    """
    print(f"loading {model.tag} ({name})", file=sys.stderr, flush=True)
    try:
        return RUNNERS[model_kind(name).runtime](model)
    except ModelMismatchError:
        raise
    except Exception as error:
        raise ModelMismatchError(f"cannot load {model.tag} ({name}): {type(error).__name__}: {error}") from error


def jsonable(value: Any) -> Any:
    """A card's metadata as JSON can carry it: NaN and infinities become null."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
