"""The largest feature value the models take, and what is said of a feature row beyond it.

One check for every entry point: the service (``bentos.inputs.usable_features``: a window's last row, 422) and
batch inference (``bentos.batch_scoring``: every scored row, an ``OHLCVValidationError`` naming row, symbol and
date). scikit-learn's trees compare in float32, so a larger value is an error deep inside a model (scikit-learn's
"Input X contains infinity or a value too large for dtype('float32')", naming nothing). Only prices no market quotes
(1e-300 next to 1e300) give such features.
"""

from __future__ import annotations

import numpy as np

from features import DEFAULT_SPEC

#: Largest feature value (in size) the models can take: float32's largest.
FEATURE_LIMIT = float(np.finfo(np.float32).max)
#: The rule a row beyond the limit breaks (the service's error item and batch inference's violation name it so).
FEATURE_OUT_OF_RANGE = "features_out_of_range"


def beyond_limit(rows: np.ndarray) -> np.ndarray:
    """Whether each feature row (..., n_features) has a value beyond :data:`FEATURE_LIMIT` in size (NaN is not: the
    models take missing values)."""
    return np.asarray((np.abs(rows) > FEATURE_LIMIT).any(axis=-1))


def beyond_limit_message(row: np.ndarray) -> str:
    """What is wrong with a feature row beyond the limit, naming its features; the caller says where the row is."""
    out_of_range = np.flatnonzero(np.abs(row) > FEATURE_LIMIT)
    named = ", ".join(f"{DEFAULT_SPEC.names[i]}={row[i]:.3g}" for i in out_of_range)
    return (
        f"its prices give features beyond what the models take ({named}; at most {FEATURE_LIMIT:.3g} in size): "
        "are some bars in other units or scaled?"
    )
