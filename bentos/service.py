"""The MLOPS-finance service: six production models behind typed APIs, in one process.

Serve from the source tree with ``mlops serve`` (or ``bentoml serve bentos.service:MarketModels`` once
``bentos/production.json`` exists); ``mlops build`` makes the Bento.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from http import HTTPStatus
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
import pandas as pd
from bentoml.exceptions import BentoMLException
from bentoml.models import BentoModel
from pydantic import Field

from bentos.inputs import BadInput, PayloadTooLarge, as_of, bars_of, latest_features, regime_features
from bentos.production import read_manifest
from bentos.prophet_model import UnknownSymbolError
from bentos.runners import (
    BoosterRunner,
    DirectionRunner,
    ForestRunner,
    PriceRunner,
    RegimeRunner,
    Runner,
    load_runner,
)
from bentos.schemas import (
    AllPredictions,
    BarWindow,
    DirectionPrediction,
    ForecastPoint,
    ModelCardOut,
    ModelRef,
    PriceForecast,
    RegimePrediction,
    ReturnPrediction,
    VolatilityPrediction,
)
from bentos.settings import ServiceSettings
from features import Bars

SETTINGS = ServiceSettings()
PRODUCTION = read_manifest(SETTINGS.production_file)


class UnknownSymbol(BentoMLException):
    error_code = HTTPStatus.NOT_FOUND


def _ref(runner: Runner) -> ModelRef:
    return ModelRef(name=runner.identity.name, version=runner.identity.version)


@bentoml.service(
    name="mlops_finance",
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
)
class MarketModels:
    """Return, direction, volatility, regime and price models for daily OHLCV bars."""

    return_lightgbm = BentoModel(PRODUCTION["return_lightgbm"])
    return_random_forest = BentoModel(PRODUCTION["return_random_forest"])
    direction_lightgbm = BentoModel(PRODUCTION["direction_lightgbm"])
    volatility_lightgbm = BentoModel(PRODUCTION["volatility_lightgbm"])
    price_prophet = BentoModel(PRODUCTION["price_prophet"])
    regime_hmm = BentoModel(PRODUCTION["regime_hmm"])

    def __init__(self) -> None:
        self.returns: dict[str, BoosterRunner | ForestRunner] = {
            "lightgbm": load_runner("return_lightgbm", self.return_lightgbm),  # type: ignore[dict-item]
            "random_forest": load_runner("return_random_forest", self.return_random_forest),  # type: ignore[dict-item]
        }
        self.direction: DirectionRunner = load_runner("direction_lightgbm", self.direction_lightgbm)  # type: ignore[assignment]
        self.volatility: BoosterRunner = load_runner("volatility_lightgbm", self.volatility_lightgbm)  # type: ignore[assignment]
        self.regime: RegimeRunner = load_runner("regime_hmm", self.regime_hmm)  # type: ignore[assignment]
        self.price: PriceRunner = load_runner("price_prophet", self.price_prophet)  # type: ignore[assignment]
        self.all_runners: list[Runner] = [
            *self.returns.values(),
            self.direction,
            self.volatility,
            self.regime,
            self.price,
        ]

    # answers for one window, shared by the single, all and batch methods -----------------------------
    def _return(self, bars: Bars, features: np.ndarray, model: str) -> ReturnPrediction:
        runner = self.returns[model]
        value = float(runner.predict(features)[0])
        return ReturnPrediction(
            as_of=as_of(bars), horizon_days=runner.horizon, expected_log_return=value, model=_ref(runner)
        )

    def _direction(self, bars: Bars, features: np.ndarray) -> DirectionPrediction:
        runner = self.direction
        p = float(runner.predict(features)[0])
        return DirectionPrediction(
            as_of=as_of(bars),
            horizon_days=1,
            probability_up=p,
            direction="up" if p >= runner.threshold else "down",
            threshold=runner.threshold,
            model=_ref(runner),
        )

    def _volatility(self, bars: Bars, features: np.ndarray) -> VolatilityPrediction:
        runner = self.volatility
        value = float(runner.predict(features)[0])
        return VolatilityPrediction(
            as_of=as_of(bars), horizon_days=runner.horizon, annualized_volatility=value, model=_ref(runner)
        )

    def _regime(self, bars: Bars, rows: np.ndarray) -> RegimePrediction:
        runner = self.regime
        state, probabilities = runner.predict(rows)
        return RegimePrediction(
            as_of=as_of(bars),
            regime=runner.names[state],
            probabilities={name: float(p) for name, p in zip(runner.names, probabilities, strict=True)},
            expected_duration_days=float(runner.durations[state]),
            model=_ref(runner),
        )

    def _all(self, bars: Bars) -> AllPredictions:
        rows = regime_features(bars)  # computed once: the last row feeds every tabular model
        latest = rows[-1:]
        return AllPredictions(
            as_of=as_of(bars),
            return_lightgbm=self._return(bars, latest, "lightgbm"),
            return_random_forest=self._return(bars, latest, "random_forest"),
            direction=self._direction(bars, latest),
            volatility=self._volatility(bars, latest),
            regime=self._regime(bars, rows),
        )

    # the API -------------------------------------------------------------------------------------------
    @bentoml.api
    def predict_return(
        self, bars: BarWindow, model: Literal["lightgbm", "random_forest"] = "lightgbm"
    ) -> ReturnPrediction:
        """Forward log return over the model's horizon (5 trading days by default) after the last bar."""
        window = bars_of(bars, SETTINGS.max_bars)
        return self._return(window, latest_features(window), model)

    @bentoml.api
    def predict_direction(self, bars: BarWindow) -> DirectionPrediction:
        """Calibrated probability that the next close is above the last one."""
        window = bars_of(bars, SETTINGS.max_bars)
        return self._direction(window, latest_features(window))

    @bentoml.api
    def predict_volatility(self, bars: BarWindow) -> VolatilityPrediction:
        """Annualised realized volatility expected over the model's horizon."""
        window = bars_of(bars, SETTINGS.max_bars)
        return self._volatility(window, latest_features(window))

    @bentoml.api
    def detect_regime(self, bars: BarWindow) -> RegimePrediction:
        """Market regime (calm / normal / turbulent) at the last bar, filtered over the window."""
        window = bars_of(bars, SETTINGS.max_bars)
        return self._regime(window, regime_features(window))

    @bentoml.api
    def forecast_price(
        self,
        symbol: str = "^GSPC",
        periods: Annotated[int, Field(ge=1, le=260)] = 10,
        bars: BarWindow | None = None,
    ) -> PriceForecast:
        """Price forecast for the next business days with intervals, anchored to the last close.

        Without ``bars`` the forecast starts from the last bar the model was trained on; with a window of
        recent bars it is anchored to their last close instead.
        """
        recent = None
        if bars is not None:
            window = bars_of(bars, SETTINGS.max_bars)
            recent = pd.DataFrame({"date": window.dates, "close": window.close, "volume": window.volume})
        try:
            frame = self.price.forecast(symbol, periods, recent)
        except UnknownSymbolError as error:
            raise UnknownSymbol(str(error)) from None
        frame = frame[frame["horizon"] > 0]  # row 0 is the anchor itself
        anchor = self.price.models.anchor(symbol, recent)
        return PriceForecast(
            symbol=symbol,
            anchor_date=str(pd.Timestamp(anchor.date).date()),
            anchor_close=float(anchor.close),
            interval_width=float(self.price.models.model(symbol).interval_width),
            forecast=[
                ForecastPoint(date=str(pd.Timestamp(d).date()), price=float(p), lower=float(lo), upper=float(hi))
                for d, p, lo, hi in frame[["date", "price", "lower", "upper"]].itertuples(index=False)
            ],
            model=_ref(self.price),
        )

    @bentoml.api
    def predict_all(self, bars: BarWindow) -> AllPredictions:
        """Every model's answer for one window, features computed once."""
        return self._all(bars_of(bars, SETTINGS.max_bars))

    @bentoml.api
    def predict_all_batch(self, windows: list[BarWindow]) -> list[AllPredictions]:
        """``predict_all`` for many windows (e.g. many symbols) in one call."""
        if len(windows) > SETTINGS.max_windows:
            raise PayloadTooLarge(f"windows: {len(windows)} given, at most {SETTINGS.max_windows} per call")
        parsed = [bars_of(w, SETTINGS.max_bars, where=f"windows[{i}]") for i, w in enumerate(windows)]
        return [self._all(bars) for bars in parsed]

    @bentoml.api
    def models(self) -> list[ModelCardOut]:
        """The model cards of the versions this service serves."""
        return [
            ModelCardOut(name=r.identity.name, version=r.identity.version, card=_jsonable(r.card))
            for r in self.all_runners
        ]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


__all__ = ["BadInput", "MarketModels"]
