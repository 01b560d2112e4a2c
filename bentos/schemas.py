"""Request and response schemas of the service (pydantic), with the examples the OpenAPI docs show, and the
errors bad requests get. Light to import: ``bentoml serve``'s supervisor process imports it (see ``bentos.service``).
"""

from __future__ import annotations

import json
from functools import cache
from http import HTTPStatus
from typing import Any, Literal

from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ConfigDict, Field

from bentos.settings import PACKAGE_DIR

EXAMPLE_FILE = PACKAGE_DIR / "examples" / "sp500_window.json"


@cache
def example_window() -> dict[str, Any]:
    """The last 260 daily bars of the S&P 500 in 2018 (real data bundled with arch), as a request holds them."""
    return dict(json.loads(EXAMPLE_FILE.read_text()))


class BarWindow(BaseModel):
    """Daily OHLCV bars of one symbol, oldest first, as columns of equal length (``DataFrame.to_dict("list")``).

    At least the models' lookback + 1 bars (252); dates strictly increasing; prices finite and > 0;
    volume finite and >= 0; high >= max(open, close); low <= min(open, close).
    """

    # BentoML's OpenAPI takes one "example" (not "examples"): 260 real S&P 500 bars, so "Try it out" works
    model_config = ConfigDict(json_schema_extra={"example": example_window()})

    date: list[str] = Field(description="Trading dates, ISO 8601 (YYYY-MM-DD).")
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]


class BadInput(BentoMLException):
    """The request is well-formed JSON of the right shape but breaks the OHLCV contract or a limit (422)."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class ModelRef(BaseModel):
    name: str
    version: str


class ReturnPrediction(BaseModel):
    as_of: str = Field(description="Date of the last bar: the prediction uses bars up to and including it.")
    horizon_days: int
    expected_log_return: float = Field(description="Predicted log return from the last close over the horizon.")
    model: ModelRef


class DirectionPrediction(BaseModel):
    as_of: str
    horizon_days: int
    probability_up: float = Field(description="Calibrated probability that the next close is above the last.")
    direction: Literal["up", "down"]
    threshold: float = Field(description="probability_up at or above which the direction is 'up'.")
    model: ModelRef


class VolatilityPrediction(BaseModel):
    as_of: str
    horizon_days: int
    annualized_volatility: float = Field(description="Realized volatility expected over the horizon, annualised.")
    model: ModelRef


class RegimePrediction(BaseModel):
    as_of: str
    regime: str
    probabilities: dict[str, float] = Field(description="Filtered probability of each regime at the last bar.")
    expected_duration_days: float = Field(description="Expected length of a stay in this regime.")
    model: ModelRef


class ForecastPoint(BaseModel):
    date: str
    price: float
    lower: float
    upper: float


class PriceForecast(BaseModel):
    symbol: str
    anchor_date: str = Field(description="The last observed bar the forecast is anchored to.")
    anchor_close: float
    interval_width: float
    forecast: list[ForecastPoint]
    model: ModelRef


class AllPredictions(BaseModel):
    as_of: str
    return_lightgbm: ReturnPrediction
    return_random_forest: ReturnPrediction
    direction: DirectionPrediction
    volatility: VolatilityPrediction
    regime: RegimePrediction


class ModelCardOut(BaseModel):
    name: str
    version: str
    card: dict[str, Any]
