"""The MLOPS-finance service: six production models behind typed APIs, in one process.

Serve from the source tree with ``mlops serve`` (or ``bentoml serve bentos.service:MarketModels``): it serves what the
registry calls production; ``mlops build`` makes the Bento, which serves the versions it shipped.

Start-up: ``bentoml serve`` imports this module twice, once in its supervisor process (only to read the service's
configuration) and once in the worker. Everything heavy (numpy, pandas, the feature pipeline, LightGBM's library,
Prophet and the matplotlib it imports) is therefore imported by ``MarketModels.__init__``, which runs in the worker
before ``/readyz`` answers: the supervisor skips it and no cost moves onto the first request
(``benchmarks/bench_service.py`` measures launch to ready). The boosters go through the lightgbm package (which
imports scikit-learn); the forest predicts from its flat nodes and the HMM filters in numpy, so hmmlearn is not
imported (``tests/test_training.py`` checks; ``bentos/runners.py`` gives the measurements behind each choice). The
request path then only looks these modules up (the ``_window`` helpers below).
"""

from __future__ import annotations

import faulthandler
import functools
import gc
import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import bentoml
from bentoml.models import BentoModel
from pydantic import Field

from bentos import bentoml_private, client_errors
from bentos.batching import Arrivals, ArrivalsMiddleware, Coalescer
from bentos.client_errors import ClientError
from bentos.production import ProductionManifestError, production_tags
from bentos.recording import served_rows, write
from bentos.schemas import (
    AllPredictions,
    BadInput,
    CorrectedDocs,
    DirectionPrediction,
    ForecastPoint,
    ModelCardOut,
    ModelRef,
    PayloadTooLarge,
    PriceForecast,
    RegimePrediction,
    ReturnPrediction,
    Symbol,
    UnknownSymbol,
    VolatilityPrediction,
    Window,
    model_ref,
)
from bentos.security import guard_http
from bentos.settings import ServiceSettings

if TYPE_CHECKING:  # imported by MarketModels.__init__, in the worker only (see the module docstring)
    import numpy as np

    from bentos.runners import BoosterRunner, DirectionRunner, ForestRunner, PriceRunner, RegimeRunner, Runner
    from features import Bars

SETTINGS = ServiceSettings()
MONITOR_LOGS = SETTINGS.monitor_logs  # built once: built per answer, it took ~1.5 % of a worker's CPU under load
PRODUCTION = production_tags(SETTINGS.production_file)
bentoml_private.read_model_info_with_libyaml()  # before BentoML reads the models' model.yaml (bentoml_private)


def _check_stored(production: dict[str, str]) -> None:
    """Every production model readable in the store, or an error naming the one that is not (not BentoML's own)."""
    for name, tag in production.items():
        try:
            bentoml.models.get(tag)
        except Exception as error:
            raise ProductionManifestError(
                f"cannot read the stored model {tag} ({name}) in the model store: {type(error).__name__}: {error}"
            ) from error


_check_stored(PRODUCTION)
#: the one-window methods whose features are coalesced, and the count of their requests on the way in
COALESCED_ROUTES = ("/predict_return", "/predict_direction", "/predict_volatility")
ARRIVALS = Arrivals()


# the request path: bentos.inputs (numpy, pandas, features) is loaded by MarketModels.__init__, so each of these
# imports is a dictionary lookup (~0.3 us), not a load
def _window(bars: Window, where: str = "bars", loc: tuple[str | int, ...] | None = None) -> Bars:
    from bentos.inputs import bars_of

    return bars_of(bars, SETTINGS.max_bars, where, loc)


def _latest_features_stacked(windows: list[Bars]) -> list[np.ndarray]:
    """The feature row of each window's last bar (each (1, n_features)), computed in one pass over them all."""
    from features import DEFAULT_SPEC

    if len(windows) == 1:  # no load: skip stacking; the last row needs only the last min_bars bars
        return [DEFAULT_SPEC.compute(windows[0].tail(DEFAULT_SPEC.min_bars), rows=1)]
    matrix = DEFAULT_SPEC.compute_latest_stacked(windows)
    return [matrix[i : i + 1] for i in range(matrix.shape[0])]


def _latest_rows(requests: list[Window]) -> list[tuple[Bars, np.ndarray] | Exception]:
    """Each request's validated window and its last feature row, the windows checked and computed together.

    A window that breaks the OHLCV contract, or whose features the models cannot take, gets its own error.
    """
    from bentos.inputs import bars_of_many, usable_features
    from features import Bars

    parsed = bars_of_many(requests, SETTINGS.max_bars)
    valid = [p for p in parsed if isinstance(p, Bars)]
    rows = iter(_latest_features_stacked(valid) if valid else ())
    results: list[tuple[Bars, np.ndarray] | Exception] = []
    for window in parsed:
        if isinstance(window, Exception):
            results.append(window)
            continue
        row = next(rows)
        try:
            results.append((window, usable_features(window, row)))
        except Exception as error:
            results.append(error)
    return results


def _regime_features(bars: Bars) -> np.ndarray:
    from bentos.inputs import regime_features

    return regime_features(bars)


@functools.cache  # one per process: Prometheus refuses a second metric of the same name
def _feature_pass_histogram() -> Any:
    """``/metrics``: how many concurrent requests' windows each feature computation took (created in the worker)."""
    return bentoml.metrics.Histogram(
        name="mlops_feature_pass_windows",
        documentation="Windows of concurrent one-window requests whose features were computed in one pass",
        buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
    )


def _as_of(bars: Bars) -> str:
    from bentos.inputs import as_of

    return as_of(bars)


@bentoml.service(
    name="mlops_finance",
    # one worker process (BentoML's default, pinned): the six models load once, and on two cores the second core
    # is better left to the OS, the client and the HTTP stack than to a second copy of every model
    workers=1,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
    monitoring={  # every answer recorded as JSON lines (bentos/recording.py), what monitoring/store.py ingests
        "enabled": SETTINGS.record_answers,
        "options": {"log_path": str(MONITOR_LOGS)},
    },
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
        faulthandler.enable()  # a native crash while loading a model still prints where it was (and which model)
        if cpus := os.environ.get("MLOPS_WORKER_CPUS"):
            from bentos.worker import pin_worker

            pin_worker(cpus)
        client_errors.install()  # a 4xx is one warning line in the log, not an error with a traceback
        import bentos.inputs  # noqa: F401 - loads numpy, pandas and the feature pipeline for the request path
        from bentos.runners import load_runner

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
        # The models and the libraries behind them (~240k objects) live as long as the worker: take them out of the
        # cyclic garbage collector's view. Under load BentoML's request handling leaves cyclic garbage (~20 objects
        # a queued request), and every full collection would otherwise rescan this heap (150-300 ms a time).
        gc.collect()
        gc.freeze()
        # the one-window methods' OHLCV checks and features, for all the requests in flight at once (bentos/batching.py)
        self.latest_rows: Coalescer[Window, tuple[Bars, np.ndarray]] = Coalescer(
            _latest_rows,
            SETTINGS.max_coalesced,
            observe=_feature_pass_histogram().observe,
            arrivals=ARRIVALS,
        )
        # built once: every answer names the same served versions, and the skill their cards record
        self.refs = {id(r): model_ref(r.identity.name, r.identity.version, r.card) for r in self.all_runners}

    async def _latest_row(self, bars: Window) -> tuple[Bars, np.ndarray]:
        """The request's validated window and its last feature row, checked and computed with the requests in flight."""
        try:
            return await self.latest_rows.submit(bars)
        except ClientError as error:  # made in the computation shared with other requests: this request's answer
            error.record()
            raise

    def _ref(self, runner: Runner) -> ModelRef:
        return self.refs[id(runner)]

    @staticmethod
    def _record(method: str, answer: Any, bars: Bars | None, features: Any = (), symbol: str | None = None) -> Any:
        """Record ``answer`` (``bentos.recording.served_rows``) and return it."""
        if SETTINGS.record_answers:
            write(served_rows(method, answer, bars, features, symbol), MONITOR_LOGS)
        return answer

    # answers for one window, shared by the single, all and batch methods -----------------------------
    def _return(self, bars: Bars, features: np.ndarray, model: str) -> ReturnPrediction:
        runner = self.returns[model]
        value = float(runner.predict(features)[0])
        return ReturnPrediction(
            as_of=_as_of(bars), horizon_days=runner.horizon, expected_log_return=value, model=self._ref(runner)
        )

    def _direction(self, bars: Bars, features: np.ndarray) -> DirectionPrediction:
        runner = self.direction
        p = float(runner.predict(features)[0])
        return DirectionPrediction(
            as_of=_as_of(bars),
            horizon_days=1,
            probability_up=p,
            direction="up" if p >= runner.threshold else "down",
            threshold=runner.threshold,
            model=self._ref(runner),
        )

    def _volatility(self, bars: Bars, features: np.ndarray) -> VolatilityPrediction:
        runner = self.volatility
        value = float(runner.predict(features)[0])
        return VolatilityPrediction(
            as_of=_as_of(bars), horizon_days=runner.horizon, annualized_volatility=value, model=self._ref(runner)
        )

    def _regime(self, bars: Bars, rows: np.ndarray) -> RegimePrediction:
        runner = self.regime
        state, probabilities = runner.predict(rows)
        return RegimePrediction(
            as_of=_as_of(bars),
            regime=runner.names[state],
            probabilities={name: float(p) for name, p in zip(runner.names, probabilities, strict=True)},
            expected_duration_days=float(runner.durations[state]),
            model=self._ref(runner),
        )

    def _all(self, bars: Bars, rows: np.ndarray) -> AllPredictions:  # rows: the window's, computed once
        latest = rows[-1:]
        return AllPredictions(
            as_of=_as_of(bars),
            return_lightgbm=self._return(bars, latest, "lightgbm"),
            return_random_forest=self._return(bars, latest, "random_forest"),
            direction=self._direction(bars, latest),
            volatility=self._volatility(bars, latest),
            regime=self._regime(bars, rows),
        )

    # the API -------------------------------------------------------------------------------------------
    # The one-window tabular methods are coroutines: a request costs ~1 ms of CPU, less than handing it to a
    # thread and back, so they run on the event loop and share the OHLCV check and the feature computation with
    # the requests parsed meanwhile (bentos/batching.py). The methods that take longer (regime decoding, Prophet,
    # batches) stay plain functions, which BentoML runs in its thread pool, off the loop.
    @bentoml.api
    async def predict_return(
        self, bars: Window, model: Literal["lightgbm", "random_forest"] = "lightgbm", symbol: Symbol = None
    ) -> ReturnPrediction:
        """Forward log return over the model's horizon (5 trading days by default) after the last bar."""
        window, features = await self._latest_row(bars)
        return self._record("predict_return", self._return(window, features, model), window, features, symbol)

    @bentoml.api
    async def predict_direction(self, bars: Window, symbol: Symbol = None) -> DirectionPrediction:
        """Calibrated probability that the next close is above the last one."""
        window, features = await self._latest_row(bars)
        return self._record("predict_direction", self._direction(window, features), window, features, symbol)

    @bentoml.api
    async def predict_volatility(self, bars: Window, symbol: Symbol = None) -> VolatilityPrediction:
        """Annualised realized volatility expected over the model's horizon."""
        window, features = await self._latest_row(bars)
        return self._record("predict_volatility", self._volatility(window, features), window, features, symbol)

    @bentoml.api
    def detect_regime(self, bars: Window, symbol: Symbol = None) -> RegimePrediction:
        """Market regime (calm / normal / turbulent) at the last bar, filtered over the window."""
        window = _window(bars)
        rows = _regime_features(window)
        return self._record("detect_regime", self._regime(window, rows), window, rows, symbol)

    @bentoml.api
    def forecast_price(
        self,
        symbol: str = "^GSPC",
        periods: Annotated[int, Field(ge=1, le=260)] = 10,
        bars: Window | None = None,
    ) -> PriceForecast:
        """Price forecast for the next business days with intervals, anchored to the last close.

        Without ``bars`` the forecast starts from the last bar the model was trained on; with a window of
        recent bars it is anchored to their last close instead.
        """
        import pandas as pd

        from bentos.prophet_model import UnknownSymbolError

        recent, window = None, None if bars is None else _window(bars)
        if window is not None:
            recent = pd.DataFrame({"date": window.dates, "close": window.close, "volume": window.volume})
        try:
            frame = self.price.forecast(symbol, periods, recent)
        except UnknownSymbolError as error:
            raise UnknownSymbol(str(error)) from None
        frame = frame[frame["horizon"] > 0]  # row 0 is the anchor itself
        anchor = self.price.models.anchor(symbol, recent)
        answer = PriceForecast(
            symbol=symbol,
            anchor_date=str(pd.Timestamp(anchor.date).date()),
            anchor_close=float(anchor.close),
            interval_width=float(self.price.models.intervals.level),
            forecast=[
                ForecastPoint(date=str(pd.Timestamp(d).date()), price=float(p), lower=float(lo), upper=float(hi))
                for d, p, lo, hi in frame[["date", "price", "lower", "upper"]].itertuples(index=False)
            ],
            model=self._ref(self.price),
        )
        return self._record("forecast_price", answer, window)

    @bentoml.api
    def predict_all(self, bars: Window, symbol: Symbol = None) -> AllPredictions:
        """Every model's answer for one window, features computed once."""
        window = _window(bars)
        rows = _regime_features(window)
        return self._record("predict_all", self._all(window, rows), window, rows, symbol)

    @bentoml.api
    def predict_all_batch(self, windows: list[Window], symbols: list[Symbol] | None = None) -> list[AllPredictions]:
        """``predict_all`` for many windows (e.g. many symbols) in one call; ``symbols`` names each window's."""
        if len(windows) > SETTINGS.max_windows:
            message = f"{len(windows)} given, at most {SETTINGS.max_windows} per call"
            errors = [client_errors.item(("windows",), "too_many_windows", message)]
            raise PayloadTooLarge(f"windows: {message}", errors)
        if symbols is not None and len(symbols) != len(windows):
            message = f"{len(symbols)} symbols for {len(windows)} windows: give one per window (null where unknown)"
            raise BadInput(f"symbols: {message}", [client_errors.item(("symbols",), "one_per_window", message)])
        parsed = [_window(w, f"windows[{i}]", ("windows", i)) for i, w in enumerate(windows)]
        answers, recorded = [], []
        for i, bars in enumerate(parsed):
            try:
                rows = _regime_features(bars)
                answers.append(self._all(bars, rows))
            except ClientError as error:  # the window the models cannot use, named
                raise error.located(f"windows[{i}]", ("windows", i)) from None
            if SETTINGS.record_answers:  # only what is answered, in one record
                recorded += served_rows("predict_all_batch", answers[-1], bars, rows, symbols[i] if symbols else None)
        if recorded:
            write(recorded, MONITOR_LOGS)
        return answers

    @bentoml.api
    def models(self) -> list[ModelCardOut]:
        """The model cards of the versions this service serves."""
        from bentos.runners import jsonable

        return [
            ModelCardOut(name=r.identity.name, version=r.identity.version, card=jsonable(r.card))
            for r in self.all_runners
        ]


_service = cast(Any, MarketModels)  # a bentoml Service object, typed as the class by the decorator
guard_http(_service, SETTINGS)  # every 4xx a problem-details body, API keys (when configured), body limit, no forms
_service.add_asgi_middleware(CorrectedDocs)  # /docs.json as the service really is (bentos/schemas.py)
_service.add_asgi_middleware(ArrivalsMiddleware, paths=COALESCED_ROUTES, arrivals=ARRIVALS)


__all__ = ["BadInput", "MarketModels"]
