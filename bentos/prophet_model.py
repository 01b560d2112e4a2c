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

and the interval around it is the split-conformal one of ``bentos/prophet_intervals.py``, calibrated on the
walk-forward errors and scaled by the anchor's volatility (Prophet's own sampled intervals were miscalibrated, and
with ``uncertainty_samples=0`` a forecast is deterministic and about twice as fast). The prediction frame holds the
anchor date plus the future dates only, never the history
(a frame with the history takes ~1 s instead of tens of ms). The ``log_volume`` regressor is filled with the
anchor's value on every row; because it enters additively with the same value at the anchor and in the future,
its effect cancels in the anchored forecast, so the fill value only needs to be finite.

Directory layout written by the trainer (the files of one BentoML model)::

    symbols.json      manifest: the interval calibration, and per symbol its model file, anchor (last date, close,
                      log volume, EWMA variance), train range, trading calendar (absent in older manifests: XNYS)
    prophet_0.json    prophet.serialize.model_to_json of the first symbol (symbols are not safe file names)
    prophet_1.json    ...

The module is over 400 lines because the stored format, its lazy per-symbol loading and the anchored forecast are
one contract read by the trainer, the service and batch inference alike.
"""

from __future__ import annotations

import json
import logging
import math
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

from bentos.prophet_intervals import WARMUP, ConformalInterval, close_variance, continued_variance  # noqa: E402
from features.calendar import DEFAULT_CALENDAR, trading_calendar  # noqa: E402

MANIFEST_FILE = "symbols.json"
#: 2: conformal intervals and each anchor's variance (1 sampled Prophet's own intervals: retrain to serve it)
FORMAT_VERSION = 2
TARGET = "log_close"
REGRESSOR = "log_volume"
#: Longest forecast ``ProphetModels.forecast`` accepts (about a year of trading days).
MAX_PERIODS = 260


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
    """The observation a forecast starts from: its date, close and log volume, and the EWMA daily variance of the
    returns up to it (NaN when unknown: its interval then comes from the model's last training bar)."""

    date: pd.Timestamp
    close: float
    log_volume: float
    variance: float = math.nan


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
    variance = float(close_variance(closes)[-1]) if closes.size > WARMUP + 1 and (closes > 0).all() else math.nan
    return Anchor(date=index[-1], close=last_close, log_volume=float(log_volume(last_volume)), variance=variance)


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
) -> pd.DataFrame:
    """Price forecast of ``future_dates`` anchored to the close observed on ``last_date``.

    Returns one row per date: ``date``, ``horizon`` (0 for the anchor row, then 1..n in the order of
    ``future_dates``) and ``price``. The anchor row is the observation itself: its price is ``last_close`` exactly.
    Later rows apply Prophet's change since ``last_date`` (see the module docstring). The intervals are added by
    :meth:`ProphetModels.forecast` (they need the calibration, which the walk-forward makes from these forecasts).

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

    frame = pd.DataFrame({"ds": pd.DatetimeIndex([anchor_date]).append(future)})
    for name in model.extra_regressors:
        if name != REGRESSOR:
            raise ValueError(f"the model has a regressor {name!r} that only {REGRESSOR!r} models can fill")
        frame[name] = volume

    if model.uncertainty_samples:  # its sampled interval would go unused, drawn from numpy's global random state
        raise ValueError("the model samples Prophet's own intervals (uncertainty_samples > 0): retrain it")
    yhat = model.predict(frame)["yhat"].to_numpy(dtype=float)
    price = close * np.exp(yhat - yhat[0])
    price[0] = close  # the anchor is observed: no rounding
    return pd.DataFrame({"date": frame["ds"].to_numpy(), "horizon": np.arange(len(frame)), "price": price})


@dataclass(frozen=True)
class SymbolEntry:
    """What the manifest records about one symbol's model (plus its file name)."""

    last_date: str
    last_close: float
    last_log_volume: float
    train_start: str
    train_end: str
    n_train: int
    last_variance: float  # EWMA daily variance of the returns up to the last bar (the interval's scale)
    calendar: str = DEFAULT_CALENDAR  # the exchange whose sessions the forecasts are for

    @property
    def anchor(self) -> Anchor:
        return Anchor(
            pd.Timestamp(self.last_date), float(self.last_close), float(self.last_log_volume), self.last_variance
        )

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
            last_variance=float(values["last_variance"]),
            calendar=str(values.get("calendar", DEFAULT_CALENDAR)),
        )


def _recent_anchor(recent: Anchor | pd.DataFrame, entry: SymbolEntry) -> Anchor:
    """The anchor of recent bars, with its variance: their own, given more than ``WARMUP`` returns; else the last
    training bar's carried through the recent closes after it (the training's own, for bars no newer than it)."""
    if isinstance(recent, Anchor):
        anchor, dates, closes = recent, pd.DatetimeIndex([recent.date]), np.array([recent.close])
    else:
        missing = {"date", "close", "volume"} - set(recent.columns)
        if missing:
            raise ValueError(f"recent bars lack the columns {', '.join(sorted(missing))}")
        anchor = anchor_from_recent(recent["date"], recent["close"], recent["volume"])
        dates, closes = pd.DatetimeIndex(recent["date"]), recent["close"].to_numpy(dtype=float)
    if math.isfinite(anchor.variance):
        return anchor
    later = closes[np.asarray(dates > pd.Timestamp(entry.last_date))]
    variance = continued_variance(entry.last_variance, entry.last_close, later)
    return Anchor(anchor.date, anchor.close, anchor.log_volume, variance)


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
        intervals: ConformalInterval,
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
        self.intervals = intervals
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
        entry = self.entries[symbol]
        return entry.anchor if recent is None else _recent_anchor(recent, entry)

    def forecast(self, symbol: str, periods: int, recent: Anchor | pd.DataFrame | None = None) -> pd.DataFrame:
        """Anchored forecast of the next ``periods`` sessions of the symbol's exchange (see :func:`anchored_forecast`),
        with the calibrated interval (``lower``, ``upper``; ``bentos/prophet_intervals.py``) at the anchor's
        volatility.

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
        frame = anchored_forecast(model, anchor.date, anchor.close, anchor.log_volume, future)
        volatility = math.sqrt(anchor.variance)
        lower, upper = self.intervals.bounds(frame["price"].to_numpy(), volatility, frame["horizon"].to_numpy())
        return frame.assign(lower=lower, upper=upper)

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "target": TARGET,
            "regressor": REGRESSOR,
            "intervals": self.intervals.card(),
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
            raise ValueError(
                f"{path} has format version {version!r}; this code reads version {FORMAT_VERSION} "
                "(version 1 sampled Prophet's own intervals: retrain with `mlops train` for calibrated ones)"
            )
        files, entries = {}, {}
        for symbol, values in manifest["symbols"].items():
            files[symbol] = root / values["file"]
            entries[symbol] = SymbolEntry.from_dict(values)
        intervals = ConformalInterval.from_card(manifest["intervals"])
        return cls({}, entries, intervals, max_periods=max_periods, files=files, cache_size=cache_size)


def load_models(directory: str | Path) -> ProphetModels:
    """The models of a ``price_prophet`` directory, e.g. ``bentoml.models.get(tag).path``."""
    return ProphetModels.load(directory)
