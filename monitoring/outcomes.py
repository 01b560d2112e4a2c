"""Realised outcomes: each recorded prediction joined with what the market did, by the definitions training used.

The realised bars come from the snapshot store: for each recorded symbol, the newest snapshot that holds it. The
realised value of a row is its model's training target at the row's as-of bar (``features/targets.py``), by the
model's task (``features/catalog.py``):

==========  ===========================================================================================
return      ``forward_log_return(close, horizon)``
direction   ``next_day_direction(close)``
volatility  ``forward_realized_volatility(close, horizon)``
price       the close on the forecast's target date (its anchor close, the ``label``, is the random walk)
regime      the next day's log return: no target of its own; the regime is checked by the realised volatility
            of the days each regime was served on
==========  ===========================================================================================

A row is ``realised`` when the bars through its horizon are stored, ``pending`` while they are not yet, and
``unscorable`` with the reason otherwise. A window recorded without a symbol is matched to a stored series by its
bars: the one stored series whose bars ending on the window's last date have the window's digest
(:func:`bentos.recording.window_digest`), bit for bit. None, or several, is unscorable: never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bentos.recording import window_digest
from data.snapshots import SnapshotInfo, SnapshotStore
from features import Bars
from features.catalog import model_kind
from features.targets import forward_log_return, forward_realized_volatility, next_day_direction

REALISED, PENDING, UNSCORABLE = "realised", "pending", "unscorable"
#: the columns :func:`outcomes` adds to the recorded rows
OUTCOME_COLUMNS = ("scored_symbol", "matched_by_bars", "status", "realised", "realised_date", "snapshot_id", "reason")


@dataclass(frozen=True)
class Series:
    """One symbol's stored bars, from the newest snapshot that holds it."""

    symbol: str
    snapshot_id: str
    bars: Bars

    def position(self, day: str) -> int | None:
        """The index of the bar dated ``day``, None when there is none."""
        target = np.datetime64(day, "D")
        i = int(np.searchsorted(self.bars.dates, target))
        return i if i < self.bars.dates.size and self.bars.dates[i] == target else None

    @property
    def last(self) -> str:
        return str(self.bars.dates[-1])


class SeriesFinder:
    """The stored series of a symbol (newest snapshot holding it first), and of a window sent without one."""

    def __init__(self, store: SnapshotStore):
        self.store = store
        self.snapshots: list[SnapshotInfo] = store.snapshots()[::-1]  # newest first
        self._series: dict[str, Series | None] = {}
        self._digests: dict[tuple[str, int], dict[str, str]] = {}  # (as_of, length) -> digest -> symbol

    def symbols(self) -> list[str]:
        return sorted({s for info in self.snapshots for s in info.symbols})

    def series(self, symbol: str) -> Series | None:
        if symbol not in self._series:
            info = next((i for i in self.snapshots if symbol in i.rows_per_symbol), None)
            if info is None:
                self._series[symbol] = None
            else:
                frame = self.store.load(info.id, symbols=[symbol]).sort_values("date", kind="stable")
                self._series[symbol] = Series(symbol, info.id, Bars.from_frame(frame))
        return self._series[symbol]

    def match(self, window: str, as_of: str) -> tuple[Series | None, str]:
        """The stored series whose bars through ``as_of`` are the recorded ``window``, or None and why not."""
        try:
            length = int(window.split(":", 1)[0])
        except ValueError:
            return None, "sent without a symbol and recorded without its bars' digest"
        key = (as_of, length)
        if key not in self._digests:
            found: dict[str, str] = {}
            for symbol in self.symbols():
                series = self.series(symbol)
                end = None if series is None else series.position(as_of)
                if series is None or end is None or end + 1 < length:
                    continue
                b, cut = series.bars, slice(end + 1 - length, end + 1)
                part = Bars(b.dates[cut], b.open[cut], b.high[cut], b.low[cut], b.close[cut], b.volume[cut])
                digest = window_digest(part)
                found[digest] = symbol if digest not in found else ""  # "": several series share these bars
            self._digests[key] = found
        matched = self._digests[key].get(window)
        if matched is None:
            return None, f"sent without a symbol, and its {length} bars to {as_of} match no stored series"
        if matched == "":
            return None, f"sent without a symbol, and its {length} bars to {as_of} match several stored series"
        return self.series(matched), ""


def outcomes(rows: Iterable[Mapping[str, Any]], store: SnapshotStore) -> pd.DataFrame:
    """The recorded ``rows`` (``PredictionStore.rows()``) with their outcome columns (:data:`OUTCOME_COLUMNS`)."""
    finder = SeriesFinder(store)
    records = []
    for row in rows:
        record = dict(row)
        record.update(_outcome(row, finder))
        records.append(record)
    return pd.DataFrame.from_records(records)


def _outcome(row: Mapping[str, Any], finder: SeriesFinder) -> dict[str, Any]:
    symbol, matched = str(row["symbol"]), False
    if symbol:
        series = finder.series(symbol)
        if series is None:
            return _result(symbol, False, UNSCORABLE, reason=f"no stored snapshot holds {symbol}")
    else:
        series, why = finder.match(str(row["window"]), str(row["as_of"]))
        if series is None:
            return _result("", False, UNSCORABLE, reason=why)
        symbol, matched = series.symbol, True
    value, day, status, reason = realised_value(model_kind(str(row["model"])).task, series, row)
    return _result(symbol, matched, status, value, day, series.snapshot_id, reason)


def realised_value(task: str, series: Series, row: Mapping[str, Any]) -> tuple[float, str, str, str]:
    """(value, the date it became known, status, reason) of one recorded row on its stored series."""
    as_of = str(row["as_of"])
    start = series.position(as_of)
    if start is None:
        return _missing(series, as_of)
    close = series.bars.close
    if task == "price":
        target = str(row["target_date"])
        end = series.position(target)
        return _missing(series, target) if end is None else (float(close[end]), target, REALISED, "")
    horizon = 1 if task in ("direction", "regime") else int(row["horizon_days"])
    end = start + horizon
    if end >= close.size:
        return np.nan, "", PENDING, f"{horizon} bar(s) after {as_of} needed, {series.symbol}'s end on {series.last}"
    path = close[start : end + 1]
    if task == "return":
        value = forward_log_return(path, horizon)[0]
    elif task == "direction":
        value = next_day_direction(path)[0]
    elif task == "volatility":
        value = forward_realized_volatility(path, horizon)[0]
    else:  # regime: the next day's log return
        value = forward_log_return(path, 1)[0]
    return float(value), str(series.bars.dates[end]), REALISED, ""


def _missing(series: Series, day: str) -> tuple[float, str, str, str]:
    """A day without a stored bar: pending when the bars have not reached it yet, unscorable otherwise."""
    if day > series.last:
        return np.nan, "", PENDING, f"{series.symbol}'s stored bars end on {series.last}"
    return np.nan, "", UNSCORABLE, f"{day} is not a bar of {series.symbol} in snapshot {series.snapshot_id}"


def _result(
    symbol: str,
    matched: bool,
    status: str,
    value: float = np.nan,
    day: str = "",
    snapshot_id: str = "",
    reason: str = "",
) -> dict[str, Any]:
    return dict(zip(OUTCOME_COLUMNS, (symbol, matched, status, value, day, snapshot_id, reason), strict=True))
