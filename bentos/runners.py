"""One runner per served model: it owns the stored model, checks its card, and predicts vectorised.

Runners know nothing of HTTP. Tabular runners take feature rows computed by the shared pipeline
(``features``) and return one prediction per row; the regime and price runners take what their models need.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import ctypes
import functools
import importlib.util
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import bentoml
import numpy as np
import pandas as pd

from bentos.direction_calibration import PlattCalibration
from bentos.forest_model import CUSTOM_OBJECT, FlatForest, forest_nodes
from bentos.prophet_model import ProphetModels
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


#: Prediction parameters of every booster call: one thread (the default threads cost milliseconds a row).
BOOSTER_PARAMETERS = "num_threads=1"
#: The file ``bentoml.lightgbm.save_model`` writes the booster to (LightGBM's text model format).
LIGHTGBM_MODEL_FILE = "saved_model.ubj"
_C_API_DTYPE_FLOAT64 = 1
_C_API_PREDICT_NORMAL = 0


class LightGBMError(RuntimeError):
    """An error reported by LightGBM's C library."""


@functools.cache
def _lightgbm_library() -> tuple[ctypes.CDLL, ctypes.PyDLL]:
    """LightGBM's shared library, found in the installed ``lightgbm`` package without importing the package.

    ``import lightgbm`` imports scikit-learn when it is installed (for its optional scikit-learn API), and with it
    scipy.stats: 1.5-2.5 s of a worker's start on a 2-core machine, for nothing the service calls. Two handles on
    the one library: ``CDLL`` calls release the GIL (batch predictions), ``PyDLL`` calls keep it (one row: see
    :class:`SingleRowPredictor`).
    """
    spec = importlib.util.find_spec("lightgbm")
    if spec is None or not spec.submodule_search_locations:
        raise LightGBMError("the lightgbm package is not installed")
    names = {"win32": "lib_lightgbm.dll", "darwin": "lib_lightgbm.dylib"}
    name = names.get(sys.platform, "lib_lightgbm.so")
    for folder in spec.submodule_search_locations:
        for candidate in (Path(folder) / "lib" / name, Path(folder) / name):
            if candidate.is_file():
                return ctypes.CDLL(str(candidate)), ctypes.PyDLL(str(candidate))
    raise LightGBMError(f"no {name} in the lightgbm package at {list(spec.submodule_search_locations)}")


def _check(lib: ctypes.CDLL, status: int) -> None:
    if status != 0:
        lib.LGBM_GetLastError.restype = ctypes.c_char_p
        raise LightGBMError(lib.LGBM_GetLastError().decode(errors="replace"))


class NativeBooster:
    """A LightGBM model file, predicted through LightGBM's C library (the same calls ``lightgbm.Booster`` makes).

    Predictions are ``Booster.predict(rows, num_threads=1)``'s; the tests compare the two on stored models. One output
    a row: :class:`BoosterRunner` refuses a booster with more (``models_per_iteration``) at load.
    """

    def __init__(self, model_file: str | Path, parameters: str = BOOSTER_PARAMETERS):
        self.lib, self.gil_lib = _lightgbm_library()
        self.parameters = parameters.encode()
        handle = ctypes.c_void_p()
        iterations = ctypes.c_int(0)
        _check(
            self.lib,
            self.lib.LGBM_BoosterCreateFromModelfile(
                str(model_file).encode(), ctypes.byref(iterations), ctypes.byref(handle)
            ),
        )
        self._handle = handle
        weakref.finalize(self, self.lib.LGBM_BoosterFree, handle)
        self.num_features = self._int("LGBM_BoosterGetNumFeature")
        self.models_per_iteration = self._int("LGBM_BoosterNumModelPerIteration")

    def _int(self, function: str) -> int:
        value = ctypes.c_int(0)
        _check(self.lib, getattr(self.lib, function)(self._handle, ctypes.byref(value)))
        return int(value.value)

    def predict(self, rows: np.ndarray) -> np.ndarray:
        """One prediction per row of ``rows`` (n, num_features): the raw score transformed by the objective."""
        data = np.ascontiguousarray(np.atleast_2d(rows), dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.num_features:
            raise ValueError(f"expected rows of {self.num_features} features, got shape {np.shape(rows)}")
        out = np.empty(data.shape[0], dtype=np.float64)
        length = ctypes.c_int64(0)
        _check(
            self.lib,
            self.lib.LGBM_BoosterPredictForMat(
                self._handle,
                data.ctypes.data_as(ctypes.c_void_p),
                ctypes.c_int(_C_API_DTYPE_FLOAT64),
                ctypes.c_int32(data.shape[0]),
                ctypes.c_int32(data.shape[1]),
                ctypes.c_int(1),  # row major
                ctypes.c_int(_C_API_PREDICT_NORMAL),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # every iteration
                ctypes.c_char_p(self.parameters),
                ctypes.byref(length),
                out.ctypes.data_as(ctypes.c_void_p),
            ),
        )
        if length.value != data.shape[0]:
            raise LightGBMError(f"LightGBM returned {length.value} predictions for {data.shape[0]} rows")
        return out


class SingleRowPredictor:
    """LightGBM's single-row fast path (``LGBM_BoosterPredictForMatSingleRowFast``) for one feature row.

    A service request predicts one row: the general call costs more setup than the trees' walk, and in a server it
    releases the GIL, which can hand the GIL to the event loop and leave the request waiting. This path costs a few
    microseconds and one C call made *without* releasing the GIL (``ctypes.PyDLL``), which is also what makes sharing
    one fast-config handle between threads safe. It walks the same trees with the same iterations and parameters as
    :meth:`NativeBooster.predict`; :func:`single_row_predictor` checks that the two agree bit for bit before it is used.
    """

    def __init__(self, booster: NativeBooster):
        lib = booster.gil_lib
        self.booster = booster  # the fast config points into the booster: keep it alive as long as this
        self.num_features = booster.num_features
        handle = ctypes.c_void_p()
        _check(
            booster.lib,
            lib.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_C_API_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(-1),
                ctypes.c_int(_C_API_DTYPE_FLOAT64),
                ctypes.c_int32(self.num_features),
                ctypes.c_char_p(booster.parameters),
                ctypes.byref(handle),
            ),
        )
        weakref.finalize(self, lib.LGBM_FastConfigFree, handle)
        self._handle = handle
        self._lib = booster.lib
        self._call = lib.LGBM_BoosterPredictForMatSingleRowFast
        self._call.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p]
        self._call.restype = ctypes.c_int

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """The prediction of one row of ``num_features`` float64 values, as an array of shape (1,)."""
        row = np.ascontiguousarray(row, dtype=np.float64)
        out = np.empty(1)
        length = ctypes.c_int64(0)
        status = self._call(self._handle, row.ctypes.data, ctypes.byref(length), out.ctypes.data)
        if status != 0:
            _check(self._lib, status)
        return out


def single_row_predictor(booster: NativeBooster) -> SingleRowPredictor | None:
    """The fast one-row predictor of a one-output booster, or None if LightGBM lacks it or it disagrees."""
    try:
        if booster.models_per_iteration != 1:
            return None
        predictor = SingleRowPredictor(booster)
        rng = np.random.default_rng(0)
        probes = rng.normal(size=(8, predictor.num_features))
        probes[0] = 0.0
        probes[1, ::3] = np.nan
        expected = booster.predict(probes)
        fast = np.concatenate([predictor(row) for row in probes])
    except Exception:  # a LightGBM without the fast C API: the general call serves every request
        return None
    return predictor if np.array_equal(fast, expected) else None


class BoosterRunner(Runner):
    """A LightGBM booster: return and volatility regressions."""

    def __init__(self, model: bentoml.Model):
        super().__init__(model)
        if model.info.module != "bentoml.lightgbm" or not Path(model.path_of(LIGHTGBM_MODEL_FILE)).is_file():
            raise ModelMismatchError(
                f"{self.identity.tag} is not a LightGBM model saved by bentoml.lightgbm (module {model.info.module!r})"
            )
        self.booster = NativeBooster(model.path_of(LIGHTGBM_MODEL_FILE))
        if self.booster.models_per_iteration != 1:
            raise ModelMismatchError(f"{self.identity.tag} predicts more than one value a row; one is served")
        self.one_row = single_row_predictor(self.booster)

    def predict(self, features: np.ndarray) -> np.ndarray:
        rows = np.atleast_2d(features)
        one_row = self.one_row
        if one_row is not None and rows.shape[0] == 1 and rows.shape[1] == one_row.num_features:
            return one_row(rows[0])
        return self.booster.predict(rows)


class ForestRunner(Runner):
    """The scikit-learn RandomForest return regression, predicted from its flat nodes (bentos/forest_model.py).

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


#: the runner of each way of serving a model (features.catalog names each model's)
RUNNERS: dict[Runtime, type[Runner]] = {
    "booster": BoosterRunner,
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
