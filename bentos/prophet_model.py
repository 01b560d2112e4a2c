"""Serving side of ``price_prophet``: per-symbol Prophet models of log close, anchored to the last close.

Imported by the service and by the trainer (which writes the format read here); it uses numpy, pandas,
prophet, the standard library and the contract's trading calendar (``features.calendar``), never ``training`` or
``data``. Forecasts are for the next sessions of the symbol's exchange (its calendar is recorded per symbol in the
manifest): never for a weekend or a day the market is closed.

A raw Prophet curve is a smooth fit of the history: its level at the last bar can sit several percent away
from the last close, which makes raw forecasts 1.6-3.7x worse than the random walk (FACTS.md). Every forecast
here is therefore anchored: only the *change* Prophet predicts since the anchor date is applied to the
anchor's close::

    price(d) = last_close * exp(yhat(d) - yhat(last_date))

and the interval bounds the same way (``yhat_lower(d)`` and ``yhat_upper(d)`` relative to
``yhat(last_date)``). The prediction frame holds the anchor date plus the future dates only, never the history
(a frame with the history takes ~1 s instead of tens of ms). The ``log_volume`` regressor is filled with the
anchor's value on every row; because it enters additively with the same value at the anchor and in the future,
its effect cancels in the anchored forecast, so the fill value only needs to be finite.

Directory layout written by the trainer (the files of one BentoML model)::

    symbols.json      manifest: per symbol its model file, anchor (last date, close, log volume), train range,
                      trading calendar (absent in older manifests: XNYS)
    prophet_0.json    prophet.serialize.model_to_json of the first symbol (symbols are not safe file names)
    prophet_1.json    ...

The module is over 400 lines because the stored format, its lazy per-symbol loading and the anchored forecast are
one contract read by the trainer, the service and batch inference alike.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# prophet logs an ERROR on import when plotly is missing; nothing here plots, so keep it out of service logs.
logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)

from prophet import Prophet  # noqa: E402
from prophet.serialize import model_from_json, model_to_json  # noqa: E402

from features.calendar import DEFAULT_CALENDAR, trading_calendar  # noqa: E402

MANIFEST_FILE = "symbols.json"
FORMAT_VERSION = 1
TARGET = "log_close"
REGRESSOR = "log_volume"
#: Seed of the uncertainty sampling: the same request gives the same interval.
DEFAULT_SEED = 0
#: Longest forecast ``ProphetModels.forecast`` accepts (about a year of trading days).
MAX_PERIODS = 260

# Prophet samples intervals from numpy's global random state. Seeding it is only reproducible, and only
# harmless to other code, if no other thread reseeds or draws in between: predictions hold this lock and
# restore the caller's random state afterwards.
_RANDOM_STATE_LOCK = threading.Lock()


class ModelFileError(RuntimeError):
    """A symbol's stored Prophet model could not be read: the stored version is damaged."""

    def __init__(self, symbol: str, path: Path, error: Exception):
        self.symbol = symbol
        super().__init__(f"the Prophet model of {symbol} cannot be read from {path}: {type(error).__name__}: {error}")


class UnknownSymbolError(LookupError):
    """A forecast was asked for a symbol the model was not trained on."""

    def __init__(self, symbol: str, known: Sequence[str]):
        self.symbol = symbol
        self.known = sorted(known)
        super().__init__(
            f"unknown symbol {symbol!r}: the price_prophet model was trained on {', '.join(self.known) or 'nothing'}"
        )


def quiet_prophet_logging() -> None:
    """Prophet and cmdstanpy at WARNING (cmdstanpy otherwise logs two INFO lines per fit)."""
    cmdstanpy = logging.getLogger("cmdstanpy")
    # cmdstanpy sets its level to DEBUG on first use unless the logger already has a handler.
    if not cmdstanpy.handlers:
        cmdstanpy.addHandler(logging.NullHandler())
    cmdstanpy.setLevel(logging.WARNING)
    logging.getLogger("prophet").setLevel(logging.WARNING)


def log_volume(volume: Any) -> np.ndarray:
    """The regressor: log1p of volume (zero volume, as some indices report, maps to 0)."""
    return np.log1p(np.asarray(volume, dtype=float))


def _timestamp(value: Any, what: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} {value!r} is not a date") from error
    if pd.isna(stamp):
        raise ValueError(f"{what} is missing (NaT)")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_localize(None)
    return stamp.normalize()


def _dates(values: Any, what: str) -> pd.DatetimeIndex:
    try:
        index = pd.DatetimeIndex(pd.to_datetime(np.asarray(values)))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} are not dates: {error}") from error
    if index.tz is not None:
        index = index.tz_localize(None)
    if index.hasnans:
        raise ValueError(f"{what} contain missing dates")
    return index.normalize()


@dataclass(frozen=True)
class Anchor:
    """The observation a forecast starts from: its date, close and log volume."""

    date: pd.Timestamp
    close: float
    log_volume: float


def anchor_from_recent(dates: Any, close: Any, volume: Any) -> Anchor:
    """The anchor of a window of recent bars (increasing dates): its last date, last close and last log volume.

    Lets a caller forecast from bars newer than the model's training data without refitting.
    """
    index = _dates(dates, "recent bar dates")
    closes = np.asarray(close, dtype=float)
    volumes = np.asarray(volume, dtype=float)
    if not (len(index) == closes.shape[0] == volumes.shape[0]):
        raise ValueError(
            f"recent bars need as many dates as closes and volumes, got {len(index)}, {closes.shape[0]}, "
            f"{volumes.shape[0]}"
        )
    if len(index) == 0:
        raise ValueError("recent bars are empty")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise ValueError("recent bar dates must be strictly increasing")
    last_close, last_volume = float(closes[-1]), float(volumes[-1])
    if not (np.isfinite(last_close) and last_close > 0):
        raise ValueError(f"the last recent close must be finite and > 0, got {last_close}")
    if not (np.isfinite(last_volume) and last_volume >= 0):
        raise ValueError(f"the last recent volume must be finite and >= 0, got {last_volume}")
    return Anchor(date=index[-1], close=last_close, log_volume=float(log_volume(last_volume)))


def future_trading_days(last_date: Any, periods: int, calendar: str = DEFAULT_CALENDAR) -> pd.DatetimeIndex:
    """The ``periods`` sessions of ``calendar`` (an exchange, e.g. XNYS) after ``last_date``."""
    if periods < 1:
        raise ValueError(f"periods must be >= 1, got {periods}")
    last = np.datetime64(_timestamp(last_date, "last date").date(), "D")
    return pd.DatetimeIndex(trading_calendar(calendar).sessions_after(last, periods))


def anchored_forecast(
    model: Prophet,
    last_date: Any,
    last_close: float,
    last_log_volume: float,
    future_dates: Any,
    seed: int | None = DEFAULT_SEED,
) -> pd.DataFrame:
    """Price forecast of ``future_dates`` anchored to the close observed on ``last_date``.

    Returns one row per date: ``date``, ``horizon`` (0 for the anchor row, then 1..n in the order of
    ``future_dates``), ``price``, ``lower``, ``upper``. The anchor row is the observation itself: its price and
    both bounds are ``last_close`` exactly. Later rows apply Prophet's change since ``last_date`` (see the
    module docstring); the interval is Prophet's ``interval_width`` interval, sampled with the model's
    ``uncertainty_samples`` from ``seed`` (None: numpy's current global random state, unseeded), and widened
    if needed so that ``lower <= price <= upper`` always holds.

    Prophet predicts ``len(future_dates) + 1`` rows: the anchor and the future, never the history.
    """
    anchor_date = _timestamp(last_date, "last date")
    future = _dates(future_dates, "future dates")
    close, volume = float(last_close), float(last_log_volume)
    if not (np.isfinite(close) and close > 0):
        raise ValueError(f"last close must be finite and > 0, got {last_close}")
    if not np.isfinite(volume):
        raise ValueError(f"last log volume must be finite, got {last_log_volume}")
    if len(future) == 0:
        raise ValueError("no future dates to forecast")
    if not future.is_monotonic_increasing or not future.is_unique:
        raise ValueError("future dates must be strictly increasing")
    if future[0] <= anchor_date:
        raise ValueError(f"future dates must come after the last date {anchor_date.date()}, got {future[0].date()}")
    if not model.uncertainty_samples:
        raise ValueError("the model has uncertainty_samples=0: price_prophet forecasts need intervals")

    frame = pd.DataFrame({"ds": pd.DatetimeIndex([anchor_date]).append(future)})
    for name in model.extra_regressors:
        if name != REGRESSOR:
            raise ValueError(f"the model has a regressor {name!r} that only {REGRESSOR!r} models can fill")
        frame[name] = volume

    # Prophet draws from numpy's legacy global random state (it takes no Generator), hence NPY002.
    with _RANDOM_STATE_LOCK:
        if seed is None:
            raw = model.predict(frame)
        else:
            state = np.random.get_state()  # noqa: NPY002
            np.random.seed(seed)  # noqa: NPY002
            try:
                raw = model.predict(frame)
            finally:
                np.random.set_state(state)  # noqa: NPY002

    yhat = raw["yhat"].to_numpy(dtype=float)
    base = yhat[0]
    price = close * np.exp(yhat - base)
    lower = close * np.exp(raw["yhat_lower"].to_numpy(dtype=float) - base)
    upper = close * np.exp(raw["yhat_upper"].to_numpy(dtype=float) - base)
    price[0] = lower[0] = upper[0] = close  # the anchor is observed: no uncertainty, no rounding
    return pd.DataFrame(
        {
            "date": frame["ds"].to_numpy(),
            "horizon": np.arange(len(frame)),
            "price": price,
            "lower": np.minimum(lower, price),
            "upper": np.maximum(upper, price),
        }
    )


@dataclass(frozen=True)
class SymbolEntry:
    """What the manifest records about one symbol's model (plus its file name)."""

    last_date: str
    last_close: float
    last_log_volume: float
    train_start: str
    train_end: str
    n_train: int
    calendar: str = DEFAULT_CALENDAR  # the exchange whose sessions the forecasts are for

    @property
    def anchor(self) -> Anchor:
        return Anchor(pd.Timestamp(self.last_date), float(self.last_close), float(self.last_log_volume))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SymbolEntry:
        return cls(
            last_date=str(values["last_date"]),
            last_close=float(values["last_close"]),
            last_log_volume=float(values["last_log_volume"]),
            train_start=str(values["train_start"]),
            train_end=str(values["train_end"]),
            n_train=int(values["n_train"]),
            calendar=str(values.get("calendar", DEFAULT_CALENDAR)),
        )


def _recent_anchor(recent: Anchor | pd.DataFrame) -> Anchor:
    if isinstance(recent, Anchor):
        return recent
    missing = {"date", "close", "volume"} - set(recent.columns)
    if missing:
        raise ValueError(f"recent bars lack the columns {', '.join(sorted(missing))}")
    return anchor_from_recent(recent["date"], recent["close"], recent["volume"])


#: Most symbols' Prophet models a served price model keeps loaded (least recently used evicted first); each takes
#: about 1-3 MB in memory (``benchmarks/results/scale_serving.md`` when measured), so the default bound keeps them under
#: ~200 MB whatever the universe. ``MLOPS_PROPHET_CACHE_SYMBOLS`` changes it.
DEFAULT_CACHE_SYMBOLS = 64
CACHE_ENV = "MLOPS_PROPHET_CACHE_SYMBOLS"


def cache_bound() -> int:
    raw = os.environ.get(CACHE_ENV, str(DEFAULT_CACHE_SYMBOLS))
    try:
        bound = int(raw)
    except ValueError:
        raise ValueError(f"{CACHE_ENV} must be a whole number of symbols, not {raw!r}") from None
    if bound < 1:
        raise ValueError(f"{CACHE_ENV} must be at least 1, not {bound}")
    return bound


class ProphetModels:
    """The per-symbol Prophet models of one ``price_prophet`` version, with their anchors.

    Built from fitted models (training), every model is in memory. Loaded from a stored version (:meth:`load`),
    only the manifest is read: a symbol's model is read on its first forecast and kept in a least-recently-used
    cache of ``cache_size`` symbols, so a price model of hundreds of symbols starts as fast as one of two and its
    memory stays bounded. Concurrent first forecasts of a symbol read it once.
    """

    def __init__(
        self,
        models: dict[str, Prophet],
        entries: dict[str, SymbolEntry],
        max_periods: int = MAX_PERIODS,
        files: dict[str, Path] | None = None,
        cache_size: int | None = None,
    ):
        if files is None and set(models) != set(entries):
            raise ValueError(f"models for {sorted(models)} but manifest entries for {sorted(entries)}")
        if files is not None and set(files) != set(entries):
            raise ValueError(f"model files for {sorted(files)} but manifest entries for {sorted(entries)}")
        self.models: OrderedDict[str, Prophet] = OrderedDict(models)
        self.entries = dict(entries)
        self.max_periods = max_periods
        self.files = dict(files or {})
        self.cache_size = cache_size or cache_bound()
        self.loads = 0  # model files read so far
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    @property
    def symbols(self) -> list[str]:
        return sorted(self.entries)

    def model(self, symbol: str) -> Prophet:
        if symbol not in self.entries:
            raise UnknownSymbolError(symbol, self.symbols)
        with self._lock:
            found = self.models.get(symbol)
            if found is not None:
                self.models.move_to_end(symbol)
                return found
            loading = self._loading.setdefault(symbol, threading.Lock())
        with loading:  # one reader per symbol; others wait for it and take its model
            with self._lock:
                found = self.models.get(symbol)
            if found is not None:
                return found
            path = self.files[symbol]
            try:
                found = model_from_json(path.read_text())
            except (OSError, ValueError, KeyError) as error:
                raise ModelFileError(symbol, path, error) from error
            with self._lock:
                self.loads += 1
                self.models[symbol] = found
                while self.files and len(self.models) > self.cache_size:
                    self.models.popitem(last=False)
        return found

    def anchor(self, symbol: str, recent: Anchor | pd.DataFrame | None = None) -> Anchor:
        """The manifest's anchor (the last training bar) or, given recent bars, their last bar."""
        if symbol not in self.entries:
            raise UnknownSymbolError(symbol, self.symbols)
        return self.entries[symbol].anchor if recent is None else _recent_anchor(recent)

    def forecast(
        self,
        symbol: str,
        periods: int,
        recent: Anchor | pd.DataFrame | None = None,
        seed: int | None = DEFAULT_SEED,
    ) -> pd.DataFrame:
        """Anchored forecast of the next ``periods`` sessions of the symbol's exchange (see :func:`anchored_forecast`).

        ``recent`` (bars with date, close and volume columns, or an :class:`Anchor`) anchors the forecast on
        newer data than the training snapshot; by default it starts from the last training bar.
        """
        model = self.model(symbol)
        if isinstance(periods, bool) or not isinstance(periods, int | np.integer):
            raise ValueError(f"periods must be an integer, got {periods!r}")
        if not 1 <= periods <= self.max_periods:
            raise ValueError(f"periods must be between 1 and {self.max_periods}, got {periods}")
        anchor = self.anchor(symbol, recent)
        future = future_trading_days(anchor.date, int(periods), self.entries[symbol].calendar)
        return anchored_forecast(model, anchor.date, anchor.close, anchor.log_volume, future, seed=seed)

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "target": TARGET,
            "regressor": REGRESSOR,
            "symbols": {
                symbol: {"file": f"prophet_{i}.json", **self.entries[symbol].to_dict()}
                for i, symbol in enumerate(self.symbols)
            },
        }

    def save(self, directory: str | Path) -> None:
        """Write the models and ``symbols.json`` into an existing directory (a BentoML model's path)."""
        root = Path(directory)
        manifest = self.manifest()
        for symbol, entry in manifest["symbols"].items():
            (root / entry["file"]).write_text(model_to_json(self.model(symbol)))
        (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))

    @classmethod
    def load(
        cls, directory: str | Path, max_periods: int = MAX_PERIODS, cache_size: int | None = None
    ) -> ProphetModels:
        """What :meth:`save` wrote: the manifest now, each symbol's model on its first use (see the class)."""
        root = Path(directory)
        path = root / MANIFEST_FILE
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{path} is missing: {root} is not a price_prophet model directory") from error
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path} has format version {version!r}; this code reads version {FORMAT_VERSION}")
        files, entries = {}, {}
        for symbol, values in manifest["symbols"].items():
            files[symbol] = root / values["file"]
            entries[symbol] = SymbolEntry.from_dict(values)
        return cls({}, entries, max_periods=max_periods, files=files, cache_size=cache_size)


def load_models(directory: str | Path) -> ProphetModels:
    """The models of a ``price_prophet`` directory, e.g. ``bentoml.models.get(tag).path``."""
    return ProphetModels.load(directory)
