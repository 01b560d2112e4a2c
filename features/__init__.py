"""The contract shared by training and serving: the OHLCV schema, the FeatureSpec and the feature pipeline."""

from features.dates import DATE_FORMAT, parse_dates
from features.ohlcv import (
    OHLCV_COLUMNS,
    OHLCVValidationError,
    Violation,
    validate_bars,
    validate_ohlcv,
    validate_stacked,
)
from features.pipeline import Bars, FeatureParams
from features.spec import DEFAULT_SPEC, FeatureSpec, build_spec

__all__ = [
    "DATE_FORMAT",
    "DEFAULT_SPEC",
    "OHLCV_COLUMNS",
    "Bars",
    "FeatureParams",
    "FeatureSpec",
    "OHLCVValidationError",
    "Violation",
    "build_spec",
    "parse_dates",
    "validate_bars",
    "validate_ohlcv",
    "validate_stacked",
]
