"""Market data sources. Each returns a long frame of raw daily bars: symbol, date, open, high, low, close, volume.

Sources only fetch and rename; validation against the OHLCV contract happens once, in :func:`data.pull.pull`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from data.settings import DataSettings
from data.yfinance_calls import (
    AttemptFailed,
    Deadline,
    DeadlinePassed,
    Downloader,
    call_with_deadline,
    flag_histories,
    yfinance_download,
    yfinance_errors,
)
from features import DEFAULT_SPEC
from features.ohlcv import OHLCV_COLUMNS, SYMBOL_COLUMN

LONG_COLUMNS: tuple[str, ...] = (SYMBOL_COLUMN, *OHLCV_COLUMNS)
EMBEDDED_SYMBOLS: tuple[str, ...] = ("^GSPC", "^IXIC")


class SourceError(RuntimeError):
    """A source could not deliver the bars asked for; the message says which and why."""


class Source(Protocol):
    @property
    def name(self) -> str: ...

    def fetch(self, on_symbol: Callable[[str], None] | None = None) -> pd.DataFrame: ...

    def describe(self) -> dict[str, Any]: ...


def _normalise(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """Lower-case the columns, move the date index into a column and add the symbol."""
    frame = frame.copy()
    if "date" not in {str(c).lower() for c in frame.columns}:
        frame = frame.rename_axis("date").reset_index()
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    frame.insert(0, SYMBOL_COLUMN, symbol)
    missing = [c for c in OHLCV_COLUMNS if c not in frame.columns]
    if missing:
        raise SourceError(f"data for {symbol} lacks the column(s) {', '.join(missing)}")
    return frame[list(LONG_COLUMNS)]


@dataclass(frozen=True)
class EmbeddedSource:
    """Real daily bars bundled with the ``arch`` package: S&P 500 and NASDAQ Composite, 1999-2018."""

    symbols: tuple[str, ...] = EMBEDDED_SYMBOLS
    name: str = "embedded"

    def fetch(self, on_symbol: Callable[[str], None] | None = None) -> pd.DataFrame:
        from arch.data import nasdaq, sp500

        loaders = {"^GSPC": sp500.load, "^IXIC": nasdaq.load}
        unknown = sorted(set(self.symbols) - loaders.keys())
        if unknown:
            raise SourceError(f"the embedded source has no {', '.join(unknown)}; it has {', '.join(loaders)}")
        frames = []
        for symbol in self.symbols:
            frames.append(_normalise(loaders[symbol](), symbol))
            if on_symbol:
                on_symbol(symbol)
        return pd.concat(frames, ignore_index=True)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "symbols": list(self.symbols), "package": "arch"}


@dataclass(frozen=True)
class CsvSource:
    """A user's own file of daily bars: date, open, high, low, close, volume and optionally symbol."""

    path: Path
    symbol: str | None = None
    name: str = "csv"

    def fetch(self, on_symbol: Callable[[str], None] | None = None) -> pd.DataFrame:
        try:
            raw = pd.read_csv(self.path)
        except (OSError, ValueError) as error:
            raise SourceError(f"cannot read {self.path}: {error}") from error
        raw.columns = [str(c).strip().lower().replace(" ", "_") for c in raw.columns]
        if SYMBOL_COLUMN in raw.columns:
            if self.symbol is not None:
                raw = raw[raw[SYMBOL_COLUMN].astype(str) == self.symbol]
            frame = raw
        else:
            frame = _normalise(raw, self.symbol or self.path.stem)
        missing = [c for c in LONG_COLUMNS if c not in frame.columns]
        if missing:
            raise SourceError(f"{self.path} lacks the column(s) {', '.join(missing)}")
        if frame.empty:
            raise SourceError(f"{self.path} has no bars" + (f" for {self.symbol}" if self.symbol else ""))
        if on_symbol:
            for symbol in frame[SYMBOL_COLUMN].astype(str).unique():
                on_symbol(symbol)
        return frame[list(LONG_COLUMNS)].reset_index(drop=True)

    def describe(self) -> dict[str, Any]:
        return {"source": self.name, "path": str(self.path), "symbol": self.symbol}


@dataclass(frozen=True)
class YFinanceSource:
    """Daily bars from Yahoo Finance through yfinance, with retries, backoff and an overall deadline.

    Tickers are asked for in batches of ``batch_size``, one ``yf.download`` call each (yfinance fetches a batch's
    tickers on its own threads); a ticker a batch brings back no bars for, and every ticker of a batch whose call
    fails, is then asked for alone, so each missing ticker is named with its own reason. tenacity retries each call:
    ``attempts`` tries, waits of ``backoff_seconds`` doubling each retry, and no wait that would end past the deadline
    (``stop_before_delay``). One deadline, ``deadline_seconds``, covers the whole pull, all tickers and waits
    included, and cuts a download that hangs (see :func:`call_with_deadline`).
    """

    tickers: tuple[str, ...]
    start: str | None = None
    end: str | None = None
    deadline_seconds: float = 120.0
    request_timeout_seconds: float = 20.0
    attempts: int = 3
    backoff_seconds: float = 2.0
    batch_size: int = 50
    download: Downloader = field(default=yfinance_download, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    name: str = "yfinance"
    #: Write the tickers that came back when others fail, recording the missing ones (name, reason) in the manifest.
    allow_missing: bool = False
    #: Fewest bars a ticker needs to be kept (the features' lookback: ``features.DEFAULT_SPEC.min_bars``).
    min_bars: int = field(default_factory=lambda: DEFAULT_SPEC.min_bars)
    #: What the last fetch left out and flagged, for the manifest (``describe``).
    outcome: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_settings(
        cls,
        tickers: Sequence[str],
        start: str | None = None,
        end: str | None = None,
        settings: DataSettings | None = None,
        allow_missing: bool = False,
    ) -> YFinanceSource:
        """A source with the deadline, timeout, attempts and backoff of ``MLOPS_YFINANCE_*``."""
        settings = settings or DataSettings()
        return cls(
            tuple(tickers),
            start=start,
            end=end,
            deadline_seconds=settings.yfinance_deadline_seconds,
            request_timeout_seconds=settings.yfinance_request_timeout_seconds,
            attempts=settings.yfinance_attempts,
            backoff_seconds=settings.yfinance_backoff_seconds,
            batch_size=settings.yfinance_batch_size,
            allow_missing=allow_missing,
        )

    def fetch(self, on_symbol: Callable[[str], None] | None = None) -> pd.DataFrame:
        """Every ticker's bars. A ticker that fails, comes back empty or has fewer than ``min_bars`` bars is missing:
        the fetch fails naming each with its reason, or with ``allow_missing`` returns the others and records the
        missing ones in ``outcome`` (and so in the snapshot's manifest). Histories that start late or end early
        (listed later, delisted) are kept and flagged there."""
        if not self.tickers:
            raise SourceError("no tickers given to the yfinance source")
        deadline = Deadline(self.deadline_seconds)
        frames: dict[str, pd.DataFrame] = {}
        failures: dict[str, str] = {}
        for start in range(0, len(self.tickers), self.batch_size):
            batch = self.tickers[start : start + self.batch_size]
            together = self._fetch_batch(batch, deadline)
            for ticker in batch:
                try:
                    frame = together[ticker] if ticker in together else self._fetch_one(ticker, deadline)
                except SourceError as error:
                    failures[ticker] = str(error)
                else:
                    if len(frame) < self.min_bars:
                        failures[ticker] = f"{len(frame)} bars, fewer than the {self.min_bars} the features need"
                    else:
                        frames[ticker] = frame
                if on_symbol:
                    on_symbol(ticker)
        self.outcome.clear()
        self.outcome.update({"missing": failures, "flagged": flag_histories(frames)})
        if failures and not (self.allow_missing and frames):
            got = [t for t in self.tickers if t not in failures]
            kind = "partial download" if got else "download failed"
            details = "; ".join(f"{t}: {why}" for t, why in failures.items())
            hint = " (--allow-missing keeps the others and records these)" if got and not self.allow_missing else ""
            raise SourceError(
                f"yfinance {kind}: no bars for {', '.join(failures)}"
                + (f" (got {', '.join(got)})" if got else "")
                + f". {details}{hint}"
            )
        return pd.concat(frames.values(), ignore_index=True)

    def _fetch_batch(self, batch: Sequence[str], deadline: Deadline) -> dict[str, pd.DataFrame]:
        """The bars of the batch's tickers one call brought back (retried as a whole); {} for a batch of one, or
        when the call fails: its tickers are then asked for one by one."""
        if len(batch) < 2 or deadline.remaining() <= 0:
            return {}
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts) | stop_before_delay(deadline.remaining()),
            wait=wait_exponential(multiplier=self.backoff_seconds, exp_base=2),
            retry=retry_if_exception_type(AttemptFailed),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt_batch, batch, deadline)
        except (AttemptFailed, DeadlinePassed):
            return {}

    def _attempt_batch(self, batch: Sequence[str], deadline: Deadline) -> dict[str, pd.DataFrame]:
        try:
            frame = call_with_deadline(lambda: self._download(list(batch), group_by="ticker"), deadline.remaining())
        except DeadlinePassed:
            raise
        except Exception as error:
            raise AttemptFailed(f"{type(error).__name__}: {error}") from error
        if frame is None or frame.empty or not isinstance(frame.columns, pd.MultiIndex):
            raise AttemptFailed("empty result")
        found = {str(t).upper(): t for t in frame.columns.get_level_values(0).unique()}
        bars: dict[str, pd.DataFrame] = {}
        for ticker in batch:
            if ticker.upper() not in found:
                continue
            # a batch's tickers share one date index: drop the dates this ticker has no bar on
            one = pd.DataFrame(frame.xs(found[ticker.upper()], axis=1, level=0)).dropna(how="all")
            if not one.empty:
                try:
                    bars[ticker] = _normalise(self._flatten(one, ticker), ticker)
                except SourceError:
                    continue  # asked for alone next, where its error is reported
        return bars

    def _fetch_one(self, ticker: str, deadline: Deadline) -> pd.DataFrame:
        """One ticker's bars: up to ``attempts`` tries, exponential backoff, never a wait past the deadline."""
        if deadline.remaining() <= 0:
            raise SourceError(f"overall deadline of {self.deadline_seconds:g} s passed (no attempt made)")
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts) | stop_before_delay(deadline.remaining()),
            wait=wait_exponential(multiplier=self.backoff_seconds, exp_base=2),
            retry=retry_if_exception_type(AttemptFailed),
            sleep=self.sleep,
        )
        try:
            return retrying(self._attempt, ticker, deadline)
        except DeadlinePassed:
            raise SourceError(f"overall deadline of {self.deadline_seconds:g} s passed while downloading") from None
        except RetryError as error:
            last = error.last_attempt
            why = f"attempt {last.attempt_number}: {last.exception()}"
            if last.attempt_number < self.attempts:  # stopped because the next wait would pass the deadline
                raise SourceError(f"overall deadline of {self.deadline_seconds:g} s passed ({why})") from None
            raise SourceError(f"gave up after {self.attempts} attempt(s) ({why})") from None

    def _attempt(self, ticker: str, deadline: Deadline) -> pd.DataFrame:
        try:
            frame = call_with_deadline(lambda: self._download(ticker), deadline.remaining())
        except DeadlinePassed:
            raise
        except Exception as error:
            raise AttemptFailed(f"{type(error).__name__}: {error}") from error
        if frame is None or frame.empty:
            raise AttemptFailed(yfinance_errors().get(ticker, "empty result"))
        return _normalise(self._flatten(frame, ticker), ticker)

    def _download(self, tickers: str | list[str], group_by: str = "column") -> pd.DataFrame | None:
        return self.download(
            tickers,
            start=self.start,
            end=self.end,
            interval="1d",
            auto_adjust=True,
            actions=False,
            progress=False,
            threads=isinstance(tickers, list),
            group_by=group_by,
            multi_level_index=isinstance(tickers, list),
            timeout=self.request_timeout_seconds,
        )

    @staticmethod
    def _flatten(frame: pd.DataFrame, ticker: str) -> pd.DataFrame:
        if isinstance(frame.columns, pd.MultiIndex):
            level = frame.columns.nlevels - 1
            if ticker in frame.columns.get_level_values(level):
                frame = pd.DataFrame(frame.xs(ticker, axis=1, level=level))
            else:
                frame = frame.droplevel(level, axis=1)
        index = frame.index
        if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
            frame = frame.set_axis(index.tz_localize(None))
        return frame

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {"source": self.name, "tickers": list(self.tickers), "start": self.start}
        described["end"] = self.end
        if self.outcome.get("missing"):
            described["missing"] = dict(self.outcome["missing"])
        if self.outcome.get("flagged"):
            described["flagged"] = dict(self.outcome["flagged"])
        return described


def known_sources() -> Sequence[str]:
    return ("embedded", "yfinance", "csv")
