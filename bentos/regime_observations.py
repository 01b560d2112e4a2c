"""What the regime HMM observes: a transform of the shared feature pipeline's rows, and the states' names.

The observation of day t is built from the pipeline's row at t (so it only uses bars up to t):

    log_return     = ret_1            (daily log return of the close)
    log_volatility = log(rv_21)       (log of the 21-day annualised realized volatility)

Rows where either is not finite (the lookback, or a flat 21-day stretch with rv_21 = 0) are incomplete: the model
skips them. numpy only: the service, batch inference and the trainer read the same definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_TRANSFORMS = ("identity", "log")


@dataclass(frozen=True)
class Observation:
    """One dimension of the observation vector: a transform of one feature of the shared pipeline."""

    name: str
    feature: str
    transform: str = "identity"

    def __post_init__(self) -> None:
        if self.transform not in _TRANSFORMS:
            raise ValueError(f"observation {self.name!r}: unknown transform {self.transform!r} (one of {_TRANSFORMS})")

    def apply(self, column: np.ndarray) -> np.ndarray:
        values = np.asarray(column, dtype=np.float64)
        if self.transform == "log":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.log(values)
        return values.copy()


OBSERVATIONS: tuple[Observation, ...] = (
    Observation("log_return", "ret_1", "identity"),
    Observation("log_volatility", "rv_21", "log"),
)


def default_state_names(n_states: int) -> tuple[str, ...]:
    """calm / normal / turbulent for 3 states, calm / turbulent for 2, ``state_i`` otherwise (calmest first)."""
    if n_states == 3:
        return ("calm", "normal", "turbulent")
    if n_states == 2:
        return ("calm", "turbulent")
    return tuple(f"state_{i}" for i in range(n_states))


def observation_matrix(
    feature_matrix: np.ndarray,
    feature_names: Sequence[str],
    observations: Sequence[Observation] = OBSERVATIONS,
) -> tuple[np.ndarray, np.ndarray]:
    """The observation vector of every row and whether it is complete: ``(values (n, d), valid (n,))``.

    ``feature_matrix`` is the pipeline output (rows x features) with columns named by ``feature_names``.
    Incomplete rows keep their NaN/inf values; :meth:`RegimeModel.observations` drops them.
    """
    matrix = np.asarray(feature_matrix, dtype=np.float64)
    names = list(feature_names)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(
            f"feature matrix of shape {matrix.shape} does not match {len(names)} feature names (rows x features)"
        )
    missing = [o.feature for o in observations if o.feature not in names]
    if missing:
        raise ValueError(f"the regime model needs the feature(s) {', '.join(missing)}, absent from the feature names")
    values = np.column_stack([o.apply(matrix[:, names.index(o.feature)]) for o in observations])
    return values, np.isfinite(values).all(axis=1)
