"""One runner per served model: it owns the stored model, checks its card, and predicts vectorised.

Runners know nothing of HTTP. Tabular runners take feature rows computed by the shared pipeline
(``features``) and return one prediction per row; the regime and price runners take what their models need.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import ctypes
import weakref
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


#: Prediction parameters of every booster call: one thread (the default threads cost milliseconds a row).
BOOSTER_PARAMETERS = "num_threads=1"


class SingleRowPredictor:
    """LightGBM's single-row fast path (``LGBM_BoosterPredictForMatSingleRowFast``) for one feature row.

    A service request predicts one row: ``Booster.predict`` spends ~50 us on Python-side setup and five C calls
    that each release the GIL, and in a server every release can hand the GIL to the event loop and leave the
    request waiting. This path costs a few microseconds and one C call made *without* releasing the GIL
    (``ctypes.PyDLL``), which is also what makes sharing one fast-config handle between threads safe. It walks the
    same trees with the same iterations and parameters as ``Booster.predict``; :func:`single_row_predictor` checks
    that the two agree bit for bit before it is used.
    """

    def __init__(self, booster: Any, num_iteration: int, parameters: str = BOOSTER_PARAMETERS):
        from lightgbm.basic import _C_API_DTYPE_FLOAT64, _C_API_PREDICT_NORMAL, _LIB, _safe_call

        lib = ctypes.PyDLL(_LIB._name)  # same library, but calls keep the GIL (no Python callbacks run here)
        self.booster = booster  # the fast config points into the booster: keep it alive as long as this
        self.num_features = int(booster.num_feature())
        handle = ctypes.c_void_p()
        _safe_call(
            lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_C_API_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(num_iteration),
                ctypes.c_int(_C_API_DTYPE_FLOAT64),
                ctypes.c_int32(self.num_features),
                ctypes.c_char_p(parameters.encode()),
                ctypes.byref(handle),
            )
        )
        weakref.finalize(self, lib.LGBM_FastConfigFree, handle)
        self._handle = handle
        self._check = _safe_call
        self._call = lib.LGBM_BoosterPredictForMatSingleRowFast
        self._call.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p]
        self._call.restype = ctypes.c_int

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """The prediction of one row of ``num_features`` float64 values, as an array of shape (1,)."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        out = np.empty(1)
        length = ctypes.c_int64(0)
        self._check(self._call(self._handle, row.ctypes.data, ctypes.byref(length), out.ctypes.data))
        return out


def single_row_predictor(booster: Any) -> SingleRowPredictor | None:
    """The fast one-row predictor of a one-output booster, or None if LightGBM lacks it or it disagrees."""
    try:
        if booster.num_model_per_iteration() != 1:
            return None
        predictor = SingleRowPredictor(booster, num_iteration=booster.best_iteration)
        rng = np.random.default_rng(0)
        probes = rng.normal(size=(8, predictor.num_features))
        probes[0] = 0.0
        probes[1, ::3] = np.nan
        expected = np.asarray(booster.predict(probes, num_threads=1))
        fast = np.concatenate([predictor(row) for row in probes])
    except Exception:  # a LightGBM without the fast C API: Booster.predict serves every request
        return None
    return predictor if np.array_equal(fast, expected) else None


class BoosterRunner(Runner):
    """A LightGBM booster: return and volatility regressions."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        self.booster = bentoml.lightgbm.load_model(model)
        self.one_row = single_row_predictor(self.booster)

    def predict(self, features: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(features)
        one_row = self.one_row
        if one_row is not None and rows.shape[0] == 1 and rows.shape[1] == one_row.num_features:
            return one_row(rows[0])
        return np.asarray(self.booster.predict(rows, num_threads=1))


class ForestRunner(Runner):
    """The scikit-learn RandomForest return regression."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        self.forest = bentoml.sklearn.load_model(model)
        self.one_row = SingleRowForest.of(self.forest)

    def predict(self, features: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(features)
        one_row = self.one_row
        if one_row is not None and rows.shape[0] == 1 and rows.shape[1] == one_row.num_features:
            row = np.ascontiguousarray(rows, dtype=np.float32)  # the dtype sklearn's trees compare in
            if np.isfinite(row).all():  # NaN: sklearn decides (it rejects it unless its trees handle it)
                return one_row(row)
        return np.asarray(self.forest.predict(rows))


class SingleRowForest:
    """``RandomForestRegressor.predict`` of one row, without the forest's per-tree Python overhead.

    The forest's own ``predict`` spends ~0.1 ms a tree on input checks, joblib dispatch and warning filters (25 ms
    a row for 200 trees); each tree's compiled ``apply`` finds the row's leaf in ~3 us. The leaf values are summed
    in the forest's order (it predicts with ``n_jobs=1``) and divided the same way, so the result is the forest's to
    the bit; :meth:`of` checks that before it is used.
    """

    def __init__(self, forest: Any):
        self.num_features = int(forest.n_features_in_)
        self.trees = [estimator.tree_ for estimator in forest.estimators_]
        self.values = [tree.value[:, 0, 0].copy() for tree in self.trees]  # one output: the leaf's mean

    @classmethod
    def of(cls, forest: Any) -> SingleRowForest | None:
        """The fast path of a one-output forest regression, or None if it does not give the forest's answers."""
        try:
            if getattr(forest, "n_outputs_", 1) != 1:
                return None
            fast = cls(forest)
            probes = np.random.default_rng(0).normal(size=(8, fast.num_features)) * 0.05
            expected = np.asarray(forest.predict(probes))
            got = np.concatenate([fast(probes[i : i + 1].astype(np.float32)) for i in range(len(probes))])
        except Exception:  # an unexpected scikit-learn: its own predict serves every request
            return None
        return fast if np.array_equal(got, expected) else None

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """The prediction for one C-contiguous float32 row of shape (1, num_features), as an array of shape (1,)."""
        total = 0.0
        for tree, values in zip(self.trees, self.values, strict=True):
            total += values[tree.apply(row)[0]]
        return np.array([total / len(self.trees)])


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
        raw = np.minimum(np.maximum(super().predict(features), 1e-6), 1 - 1e-6)  # np.clip, at a third of the cost
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
    """The runner of a served model; raises :class:`ModelMismatchError` naming the model when it cannot serve.

    The model is named on stderr before a native library reads its files: a damaged file can crash the process
    (LightGBM segfaults on a truncated booster) and then that line, and faulthandler's traceback, are the last words.
    """
    print(f"loading {model.tag} ({name})", file=sys.stderr, flush=True)
    try:
        return RUNNERS[name](model)
    except ModelMismatchError:
        raise
    except Exception as error:
        raise ModelMismatchError(f"cannot load {model.tag} ({name}): {type(error).__name__}: {error}") from error
