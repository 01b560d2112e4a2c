"""Serving side of ``regime_hmm``: a Gaussian HMM over (daily log return, log realized volatility).

Imported by the service and by the trainer (which writes the format read here); it never imports ``training`` or
``data``. Serving (:meth:`RegimeModel.posterior_last`) needs numpy only: the forward filter is
``bentos/regime_filter.py`` (its docstring has the decision to keep it, with figures), the observations
``bentos/regime_observations.py``. Training and the hmmlearn-backed inference (:meth:`RegimeModel.hmm`, ``decode``,
``posteriors``, ``log_likelihood``) import hmmlearn lazily, on first use.

States are stored in canonical order: ascending mean of ``log_volatility``, so index 0 is always the calmest state
and names (calm / normal / turbulent for 3 states) mean the same thing after every refit. ``startprob``,
``transmat``, ``means`` and ``covars`` are permuted together, which leaves the likelihood unchanged.

File layout (one BentoML model directory)::

    regime_hmm.json   RegimeModel.to_dict(): parameters as plain float lists, observation definitions, state names
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bentos.regime_filter import window_posteriors
from bentos.regime_observations import OBSERVATIONS, Observation, default_state_names, observation_matrix

if TYPE_CHECKING:  # annotations only: importing hmmlearn costs ~2 s (scikit-learn, scipy.stats)
    from hmmlearn.hmm import GaussianHMM

MODEL_FILE = "regime_hmm.json"
FORMAT_VERSION = 1
COVARIANCE_TYPES = ("diag", "full")
#: The observation that orders (and names) the states.
ORDER_BY = "log_volatility"
_PROBABILITY_TOLERANCE = 1e-6
_LOG_2PI = float(np.log(2.0 * np.pi))


class RegimeModel:
    """A canonical Gaussian HMM: parameters, state names and the observation definitions it was fitted on.

    Arrays are read-only; ``covars`` has hmmlearn's native shape for ``covariance_type`` ((n, d) variances for
    "diag", (n, d, d) matrices for "full").
    """

    def __init__(
        self,
        state_names: Sequence[str],
        startprob: Any,
        transmat: Any,
        means: Any,
        covars: Any,
        covariance_type: str = "diag",
        observations: Sequence[Observation] = OBSERVATIONS,
    ):
        self.state_names: tuple[str, ...] = tuple(str(s) for s in state_names)
        self.covariance_type = str(covariance_type)
        self.observation_defs: tuple[Observation, ...] = tuple(observations)
        self.startprob = _frozen(startprob)
        self.transmat = _frozen(transmat)
        self.means = _frozen(means)
        self.covars = _frozen(covars)
        self._validate()
        self._model: GaussianHMM | None = None
        self._emission: tuple[np.ndarray, np.ndarray] | None = None

    # ----------------------------------------------------------------------------------------------- structure

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @property
    def n_features(self) -> int:
        return len(self.observation_defs)

    @property
    def observation_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.observation_defs)

    def _validate(self) -> None:
        n, d = self.n_states, self.n_features
        if n < 1 or len(set(self.state_names)) != n:
            raise ValueError(f"state names must be unique and non-empty, got {list(self.state_names)}")
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {self.covariance_type!r}")
        if ORDER_BY not in self.observation_names:
            raise ValueError(f"the observations must include {ORDER_BY!r}, got {list(self.observation_names)}")
        expected = {
            "startprob": (n,),
            "transmat": (n, n),
            "means": (n, d),
            "covars": (n, d) if self.covariance_type == "diag" else (n, d, d),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if value.shape != shape:
                raise ValueError(
                    f"{name} has shape {value.shape}, expected {shape} for {n} states and {d} observations"
                )
            if not np.isfinite(value).all():
                raise ValueError(f"{name} has non-finite values")
        if (self.startprob < 0).any() or abs(self.startprob.sum() - 1.0) > _PROBABILITY_TOLERANCE:
            raise ValueError("startprob must be a probability vector")
        if (self.transmat < 0).any() or np.abs(self.transmat.sum(axis=1) - 1.0).max() > _PROBABILITY_TOLERANCE:
            raise ValueError("every row of transmat must be a probability vector")
        variances = self.covars if self.covariance_type == "diag" else np.diagonal(self.covars, axis1=1, axis2=2)
        if (variances <= 0).any():
            raise ValueError("covariances must have positive variances")

    # --------------------------------------------------------------------------------------- hmmlearn and canon

    def hmm(self, implementation: str = "log") -> GaussianHMM:
        """A fresh ``hmmlearn.hmm.GaussianHMM`` with exactly these parameters (ready to decode or score).

        hmmlearn is imported here, not at module level: serving never calls this (see ``posterior_last``).
        """
        from hmmlearn.hmm import GaussianHMM

        model = GaussianHMM(
            n_components=self.n_states,
            covariance_type=self.covariance_type,
            init_params="",
            implementation=implementation,
        )
        model.n_features = self.n_features
        model.startprob_ = self.startprob.copy()
        model.transmat_ = self.transmat.copy()
        model.means_ = self.means.copy()
        model.covars_ = self.covars.copy()
        return model

    @property
    def _hmm(self) -> GaussianHMM:
        if self._model is None:
            self._model = self.hmm()
        return self._model

    @classmethod
    def from_hmm(
        cls,
        model: GaussianHMM,
        observations: Sequence[Observation] = OBSERVATIONS,
        state_names: Sequence[str] | None = None,
    ) -> RegimeModel:
        """The canonical form of a fitted hmmlearn model: states sorted by mean log volatility, then named.

        Only reads ``model``'s attributes, so it needs no hmmlearn import of its own.
        """
        covariance_type = str(model.covariance_type)
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}")
        full = np.asarray(model.covars_)  # hmmlearn's getter always returns full matrices
        covars = np.diagonal(full, axis1=1, axis2=2) if covariance_type == "diag" else full
        n = int(model.n_components)
        raw = cls(
            state_names=[f"raw_{i}" for i in range(n)],
            startprob=model.startprob_,
            transmat=model.transmat_,
            means=model.means_,
            covars=covars,
            covariance_type=covariance_type,
            observations=observations,
        )
        return raw.canonical(state_names)

    def canonical_order(self) -> np.ndarray:
        """State indices sorted by ascending mean log volatility (the canonical order)."""
        column = self.observation_names.index(ORDER_BY)
        return np.argsort(self.means[:, column], kind="stable")

    def canonical(self, state_names: Sequence[str] | None = None) -> RegimeModel:
        """This model with states in canonical order and named (``default_state_names`` unless given)."""
        names = tuple(state_names) if state_names is not None else default_state_names(self.n_states)
        return self.permuted(self.canonical_order(), names)

    def permuted(self, order: Sequence[int] | np.ndarray, state_names: Sequence[str] | None = None) -> RegimeModel:
        """The same HMM with new state ``i`` = old state ``order[i]``; every parameter is permuted consistently."""
        order = np.asarray(order, dtype=int)
        if sorted(order.tolist()) != list(range(self.n_states)):
            raise ValueError(f"{order.tolist()} is not a permutation of the {self.n_states} states")
        names = tuple(state_names) if state_names is not None else tuple(self.state_names[i] for i in order)
        covars = self.covars[order]
        return RegimeModel(
            state_names=names,
            startprob=self.startprob[order],
            transmat=self.transmat[np.ix_(order, order)],
            means=self.means[order],
            covars=covars,
            covariance_type=self.covariance_type,
            observations=self.observation_defs,
        )

    # ------------------------------------------------------------------------------------------------ inference

    def valid_rows(self, feature_matrix: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
        """Which rows of a feature matrix give a complete observation (the rows ``observations`` keeps)."""
        return observation_matrix(feature_matrix, feature_names, self.observation_defs)[1]

    def observations(self, feature_matrix: np.ndarray, feature_names: Sequence[str]) -> np.ndarray:
        """The (n, 2) observations of the complete rows of a pipeline feature matrix, in row order."""
        values, valid = observation_matrix(feature_matrix, feature_names, self.observation_defs)
        return values[valid]

    def _checked(self, observations: np.ndarray) -> np.ndarray:
        values = np.asarray(observations, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != self.n_features:
            raise ValueError(f"observations must have shape (n, {self.n_features}), got {values.shape}")
        if values.shape[0] == 0:
            raise ValueError("no complete observation rows (the window is shorter than the feature lookback?)")
        if not np.isfinite(values).all():
            raise ValueError("observations must be finite: build them with RegimeModel.observations")
        return values

    def decode(self, observations: np.ndarray, lengths: Sequence[int] | None = None) -> np.ndarray:
        """The most likely state sequence (Viterbi) as canonical state indices; ``lengths`` splits sequences."""
        values = self._checked(observations)
        _, states = self._hmm.decode(values, lengths=None if lengths is None else list(lengths), algorithm="viterbi")
        return np.asarray(states, dtype=np.int64)

    def posteriors(self, observations: np.ndarray, lengths: Sequence[int] | None = None) -> np.ndarray:
        """Smoothed state probabilities of every row (forward-backward), shape (n, n_states)."""
        values = self._checked(observations)
        return np.asarray(self._hmm.predict_proba(values, lengths=None if lengths is None else list(lengths)))

    def posterior_last(self, observations: np.ndarray) -> np.ndarray:
        """P(state at the last row | all rows) for one sequence: the forward filter at the last row.

        At the last row the smoothed and the filtered distributions coincide (the backward message is 1), so
        this is what a live service should report: it never uses rows after the day it describes.

        The filter of ``bentos.regime_filter`` (batch inference's, for one window): numpy only, equal to
        ``self.hmm().predict_proba(observations)[-1]`` to rounding.
        """
        values = self._checked(observations)
        rows = values.shape[0]
        segment = (0, self.log_densities(values), np.ones(rows, dtype=bool), 1)
        return window_posteriors(self.startprob, self.transmat, [segment], max(rows, 2))[0]

    def log_densities(self, values: np.ndarray) -> np.ndarray:
        """log N(x_t; mean_i, covar_i) of every row t (finite, as :meth:`observations` gives) and state i, shape
        (n, n_states); numpy only. The forward filter (``bentos.regime_filter``) starts from these."""
        offset, scale = self._emission_terms()
        diff = values[:, None, :] - self.means  # (rows, states, d)
        if self.covariance_type == "diag":
            quadratic = (diff * diff * scale).sum(axis=2)  # scale = 1 / variances, (states, d)
        else:
            # scale = L^-1 per state (covar = L L^T), so |L^-1 (x - mean)|^2 is the Mahalanobis distance
            whitened = np.matmul(scale, diff.transpose(1, 2, 0))  # (states, d, d) @ (states, d, rows)
            quadratic = (whitened * whitened).sum(axis=1).T
        return offset - 0.5 * quadratic

    def _emission_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """``(offset (states,), scale)``, computed once per model: offset = -(d log 2 pi + log det covar) / 2;
        scale = 1 / variances ("diag", (states, d)) or the inverse Cholesky factor ("full", (states, d, d))."""
        if self._emission is None:
            d = self.n_features
            if self.covariance_type == "diag":
                log_det = np.log(self.covars).sum(axis=1)
                scale = 1.0 / self.covars
            else:
                if not np.allclose(self.covars, self.covars.transpose(0, 2, 1)):
                    raise ValueError("full covariances must be symmetric")
                try:
                    cholesky = np.linalg.cholesky(self.covars)
                except np.linalg.LinAlgError as error:
                    raise ValueError("full covariances must be positive definite") from error
                log_det = 2.0 * np.log(np.diagonal(cholesky, axis1=1, axis2=2)).sum(axis=1)
                scale = np.linalg.solve(cholesky, np.broadcast_to(np.eye(d), cholesky.shape))
            self._emission = (-0.5 * (d * _LOG_2PI + log_det), scale)
        return self._emission

    def log_likelihood(self, observations: np.ndarray, lengths: Sequence[int] | None = None) -> float:
        """Total log-likelihood of the observations under the model."""
        values = self._checked(observations)
        return float(self._hmm.score(values, lengths=None if lengths is None else list(lengths)))

    def expected_durations(self) -> np.ndarray:
        """Expected days per visit of each state, 1 / (1 - p_ii) (inf for an absorbing state)."""
        stay = np.diag(self.transmat)
        with np.errstate(divide="ignore"):
            return np.where(stay < 1.0, 1.0 / (1.0 - stay), np.inf)

    # ---------------------------------------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-exact parameters: plain Python floats (repr round-trips float64 exactly)."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": "hmmlearn.GaussianHMM",
            "state_names": list(self.state_names),
            "covariance_type": self.covariance_type,
            "observations": [asdict(o) for o in self.observation_defs],
            "order_by": ORDER_BY,
            "startprob": self.startprob.tolist(),
            "transmat": self.transmat.tolist(),
            "means": self.means.tolist(),
            "covars": self.covars.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegimeModel:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"regime model format {version!r} is not supported (this code reads {FORMAT_VERSION})")
        try:
            return cls(
                state_names=data["state_names"],
                startprob=data["startprob"],
                transmat=data["transmat"],
                means=data["means"],
                covars=data["covars"],
                covariance_type=data["covariance_type"],
                observations=[Observation(**o) for o in data["observations"]],
            )
        except KeyError as error:
            raise ValueError(f"regime model file lacks the field {error.args[0]!r}") from error

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> RegimeModel:
        return cls.from_dict(json.loads(text))

    def save(self, directory: str | Path) -> Path:
        """Write ``regime_hmm.json`` into ``directory``; return the file's path."""
        path = Path(directory) / MODEL_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> RegimeModel:
        """Read ``regime_hmm.json`` from ``directory`` (e.g. a BentoML model's ``path``)."""
        path = Path(directory) / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {MODEL_FILE} in {directory}")
        return cls.from_json(path.read_text(encoding="utf-8"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegimeModel) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict()))

    def __repr__(self) -> str:
        return (
            f"RegimeModel({self.n_states} states {list(self.state_names)}, covariance {self.covariance_type!r}, "
            f"observations {list(self.observation_names)})"
        )


def _frozen(values: Any) -> np.ndarray:
    array = np.array(values, dtype=np.float64)  # a copy: callers' arrays stay theirs
    array.setflags(write=False)
    return array
