"""Batch inference's scoring: the service's runners on every (symbol, date) of a stream of validated chunks.

Chunks come from ``bentos.batch_files``; ``bentos.batch`` drives the whole file. Rows must be grouped by symbol with
dates increasing within each symbol: only one symbol is open at a time, and between chunks only its last
``CARRY_BARS`` bars are kept, so memory stays flat whatever the file's length. Rows in errors are numbered from 0,
as in the file without its header.

The regime of a date is point in time and exactly the service's: the forward-filtered HMM posterior given the
``REGIME_CONTEXT_ROWS`` feature rows ending at that date (fewer near the start of a symbol), which is what
``detect_regime`` answers for any window of at least ``lookback + REGIME_CONTEXT_ROWS`` bars ending there (or for the
symbol's whole history up to it, when shorter). :class:`RegimeFilter` gives it for all dates at once, with the
service's filter (``bentos.regime_filter``). A feature row beyond what the models take is refused as the service
refuses it (``bentos.feature_limit``), naming the row, symbol and date.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import bentoml
import numpy as np
import pandas as pd
import pyarrow as pa
from bentoml.exceptions import NotFound

from bentos.batch_files import output_schema
from bentos.feature_limit import FEATURE_OUT_OF_RANGE, beyond_limit, beyond_limit_message
from bentos.inputs import REGIME_CONTEXT_ROWS
from bentos.production import ProductionManifestError, bento_tags, production_tags
from bentos.regime_filter import Segment, window_posteriors
from bentos.regime_model import RegimeModel, observation_matrix
from bentos.runners import (
    BoosterRunner,
    DirectionRunner,
    ForestRunner,
    ModelMismatchError,
    RegimeRunner,
    VolatilityRunner,
    load_runner,
)
from bentos.settings import ServiceSettings
from features import DEFAULT_SPEC, Bars, OHLCVValidationError, Violation, validate_ohlcv
from features.catalog import PER_ROW_MODELS
from features.ohlcv import SYMBOL_COLUMN, Rule

#: The served models batch inference uses (price_prophet forecasts per symbol, not per row).
BATCH_MODELS = PER_ROW_MODELS
#: Bars kept per symbol between chunks: the first new row needs its regime context and each context row its lookback.
CARRY_BARS = DEFAULT_SPEC.lookback + REGIME_CONTEXT_ROWS - 1
SYMBOL_NOT_GROUPED = "symbol_not_grouped"


# ---------------------------------------------------------------------------------------------------- models

R = TypeVar("R")


def _runner(name: str, tag: str, kind: type[R]) -> R:
    try:
        model = bentoml.models.get(tag)
    except NotFound:
        raise ProductionManifestError(
            f"{tag} ({name}) is not in the BentoML model store: train and promote it there, or run where it was built"
        ) from None
    runner = load_runner(name, model)
    if not isinstance(runner, kind):
        raise ModelMismatchError(f"{tag}: expected a {kind.__name__}, got {type(runner).__name__}")
    return runner


@dataclass(frozen=True)
class BatchModels:
    """The service's runners for the per-row models, loaded in process from their production tags."""

    return_lightgbm: BoosterRunner
    return_random_forest: ForestRunner
    direction: DirectionRunner
    volatility: VolatilityRunner
    regime: RegimeRunner

    @classmethod
    def load(cls, manifest: Mapping[str, str]) -> BatchModels:
        missing = [name for name in BATCH_MODELS if name not in manifest]
        if missing:
            raise ProductionManifestError(f"the manifest names no version of {', '.join(missing)}")
        forest = _runner("return_random_forest", manifest["return_random_forest"], ForestRunner)
        forest.load_batch_model()  # batches go to scikit-learn's forest: loaded now, with the others, not mid-file
        return cls(
            return_lightgbm=_runner("return_lightgbm", manifest["return_lightgbm"], BoosterRunner),
            return_random_forest=forest,
            direction=_runner("direction_lightgbm", manifest["direction_lightgbm"], DirectionRunner),
            volatility=_runner("volatility_lightgbm", manifest["volatility_lightgbm"], VolatilityRunner),
            regime=_runner("regime_hmm", manifest["regime_hmm"], RegimeRunner),
        )

    @property
    def tags(self) -> dict[str, str]:
        runners = (self.return_lightgbm, self.return_random_forest, self.direction, self.volatility, self.regime)
        return {r.identity.name: r.identity.tag for r in runners}


def production_manifest(bento: str | None = None) -> dict[str, str]:
    """The production tags: those a built Bento ships, or by default what the service serves (the registry's)."""
    if bento is None:
        return production_tags(ServiceSettings().production_file)
    return bento_tags(bento)


# ---------------------------------------------------------------------------------------------------- regime


class RegimeFilter:
    """The service's regime answer for many dates at once: each date's forward filter over its context window.

    For the date at position t of a symbol (positions count its bars from 0), the context is the observation rows
    at positions ``max(lookback, t - context_rows + 1)`` to t, incomplete ones skipped: the rows the service filters
    for a window ending at t. The filter is ``bentos.regime_filter.window_posteriors``, the one the service's
    ``RegimeModel.posterior_last`` runs on one window.
    """

    def __init__(
        self, model: RegimeModel, context_rows: int = REGIME_CONTEXT_ROWS, lookback: int = DEFAULT_SPEC.lookback
    ):
        if context_rows < 2:
            raise ValueError("the regime context needs at least two rows")
        self.model = model
        self.context_rows = context_rows
        self.lookback = lookback

    def observations(self, feature_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The observation of every feature row and whether it is complete (as the service builds them)."""
        return observation_matrix(feature_rows, list(DEFAULT_SPEC.names), self.model.observation_defs)

    def emissions(self, observations: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The log emission density of each row under each state (the service's, ``RegimeModel.log_densities``);
        0 where the row is incomplete (the filter skips it)."""
        log_densities = self.model.log_densities(np.where(valid[:, None], observations, 0.0))
        log_densities[~valid] = 0.0
        return log_densities

    def posteriors(self, segments: list[Segment]) -> np.ndarray:
        """State probabilities of the last ``n_emit`` rows of each segment, stacked (NaN where no context).

        A segment is ``(first_position, emissions, valid, n_emit)``: consecutive rows of one symbol from its first
        position, which must not come after the first context row of its first emitted row.
        """
        model = self.model
        return window_posteriors(model.startprob, model.transmat, segments, self.context_rows, self.lookback)


# ---------------------------------------------------------------------------------------------------- scoring


_ROW_REFERENCE = re.compile(r"\brow (\d+)")
_ROW_IN_MESSAGE = (Rule.DATE_DUPLICATE, Rule.DATE_UNSORTED)  # their messages name the earlier row


def _in_file(violations: list[Violation], first_row: int) -> list[Violation]:
    """Violations with the chunk's row numbers (validate_ohlcv counts from its frame's first row) made file rows."""

    def shift(match: re.Match[str]) -> str:
        return f"row {int(match.group(1)) + first_row}"

    def moved(v: Violation) -> Violation:
        message = _ROW_REFERENCE.sub(shift, v.message) if v.rule in _ROW_IN_MESSAGE else v.message
        return replace(v, row=None if v.row is None else v.row + first_row, message=message)

    return [moved(v) for v in violations]


@dataclass
class _OpenSymbol:
    """The trailing bars of the symbol the last chunk ended in, and where they sit in its history and the file."""

    symbol: str
    first_position: int
    last_row: int
    bars: Bars


def _concat(first: Bars, second: Bars) -> Bars:
    def both(name: str) -> np.ndarray:
        return np.concatenate((getattr(first, name), getattr(second, name)))

    return Bars(both("dates"), both("open"), both("high"), both("low"), both("close"), both("volume"))


@dataclass
class _Batch:
    """One chunk's emitted rows: their keys, their feature rows and the regime filter's inputs."""

    symbols: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    first_rows: list[int] = field(default_factory=list)  # the file row of each symbol's first emitted row
    dates: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    regime: list[tuple[int, np.ndarray, np.ndarray, int]] = field(default_factory=list)


class BatchScorer:
    """Scores a stream of validated chunks, carrying the open symbol's trailing bars from one chunk to the next."""

    def __init__(self, models: BatchModels):
        self.models = models
        self.regime = RegimeFilter(models.regime.model)
        self.state_names = list(models.regime.names)
        self.schema = output_schema(self.state_names, models.tags)
        self.open: _OpenSymbol | None = None
        self.closed: dict[str, int] = {}  # symbol -> file row of its last bar

    def score(
        self, chunk: pd.DataFrame, first_row: int, history: Mapping[str, tuple[int, int]] | None = None
    ) -> pa.Table:
        """The predictions of the chunk's rows that have enough history, or OHLCVValidationError naming rows.

        ``history`` maps a symbol that starts in this chunk to where its first row sits in the symbol's whole
        history and how many of its rows are context only, not scored: a symbol read from a later date on, with the
        bars before it that its first scored row needs (``CARRY_BARS``), gives the rows its whole history gives.
        """
        try:
            frame = validate_ohlcv(chunk.reset_index(drop=True), panel=True)
        except OHLCVValidationError as error:
            raise OHLCVValidationError(_in_file(error.violations, first_row)) from None
        symbols = frame[SYMBOL_COLUMN].to_numpy()
        dates = frame["date"].to_numpy().astype("datetime64[D]")
        starts = np.flatnonzero(np.concatenate(([True], symbols[1:] != symbols[:-1])))
        ends = np.append(starts[1:], len(frame))
        self._check_order(symbols, dates, starts, first_row)
        o, h, low, c, v = (frame[name].to_numpy() for name in ("open", "high", "low", "close", "volume"))
        batch = _Batch()
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            symbol = str(symbols[start])
            new = Bars(dates[start:end], o[start:end], h[start:end], low[start:end], c[start:end], v[start:end])
            if self.open is not None and self.open.symbol == symbol:
                bars, first_position, n_context = _concat(self.open.bars, new), self.open.first_position, 0
            else:
                self._close_open_symbol()
                first_position, n_context = (history or {}).get(symbol, (0, 0))
                bars = new
            self._add(batch, symbol, bars, first_position, end - start - n_context, first_row + end - 1)
            kept = bars.tail(CARRY_BARS)
            self.open = _OpenSymbol(symbol, first_position + len(bars) - len(kept), first_row + end - 1, kept)
        return self._predict(batch)

    def _close_open_symbol(self) -> None:
        if self.open is not None:
            self.closed[self.open.symbol] = self.open.last_row
            self.open = None

    def _check_order(self, symbols: np.ndarray, dates: np.ndarray, starts: np.ndarray, first_row: int) -> None:
        """Each symbol in one block of rows, and its dates increasing across chunks (validate_ohlcv checks within)."""
        violations: list[Violation] = []
        seen: dict[str, int] = {}  # symbols of this chunk and the one closed at its start -> row of their last bar
        regrouped: set[str] = set()
        opened = self.open
        for position, start in enumerate(starts.tolist()):
            symbol, row = str(symbols[start]), first_row + start
            date = str(dates[start])
            continues = position == 0 and opened is not None and opened.symbol == symbol
            if continues and opened is not None:
                previous = opened.bars.dates[-1]
                if dates[start] <= previous:
                    rule = Rule.DATE_DUPLICATE if dates[start] == previous else Rule.DATE_UNSORTED
                    message = (
                        f"date {date} repeats the date of row {opened.last_row}"
                        if rule == Rule.DATE_DUPLICATE
                        else f"date {date} comes after {previous} (row {opened.last_row}); dates must increase"
                    )
                    violations.append(Violation(rule, message, row=row, column="date", date=date, symbol=symbol))
                opened = None
            elif opened is not None:
                seen[opened.symbol] = opened.last_row
                opened = None
            earlier = seen.get(symbol, self.closed.get(symbol))
            if not continues and earlier is not None and symbol not in regrouped:  # its first reappearance says it all
                regrouped.add(symbol)
                violations.append(
                    Violation(
                        SYMBOL_NOT_GROUPED,
                        f"symbol {symbol} appears again after other symbols (its earlier rows end at row "
                        f"{earlier}); the file must hold each symbol's rows together, e.g. sorted by symbol, date",
                        row=row,
                        column=SYMBOL_COLUMN,
                        date=date,
                        symbol=symbol,
                    )
                )
            seen[symbol] = first_row + (int(starts[position + 1]) if position + 1 < len(starts) else len(symbols)) - 1
        if violations:
            raise OHLCVValidationError(violations)

    def _add(self, batch: _Batch, symbol: str, bars: Bars, first_position: int, n_new: int, last_row: int) -> None:
        """Feature rows and regime inputs of the new bars that have ``min_bars`` bars up to them."""
        n = len(bars)
        last_position = first_position + n - 1
        n_emit = min(n_new, last_position - DEFAULT_SPEC.lookback + 1)
        if n_emit <= 0:
            return
        # from the first emitted row's first regime context row (the service's: at most REGIME_CONTEXT_ROWS rows)
        first_emitted = last_position - n_emit + 1
        context = last_position - max(DEFAULT_SPEC.lookback, first_emitted - REGIME_CONTEXT_ROWS + 1) + 1
        rows = DEFAULT_SPEC.compute(bars, rows=context)
        observations, valid = self.regime.observations(rows)
        batch.symbols.append(symbol)
        batch.counts.append(n_emit)
        batch.first_rows.append(last_row - n_emit + 1)
        batch.dates.append(bars.dates[n - n_emit :])
        batch.features.append(rows[context - n_emit :])
        emissions = self.regime.emissions(observations, valid)
        batch.regime.append((first_position + n - context, emissions, valid, n_emit))

    def _check_limit(self, batch: _Batch, features: np.ndarray) -> None:
        """Every scored row within what the models take, or an error naming each row beyond (the service's check)."""
        beyond = np.flatnonzero(beyond_limit(features))
        if beyond.size == 0:
            return
        segment = np.searchsorted(np.cumsum(batch.counts), beyond, side="right")
        starts = np.cumsum([0, *batch.counts])
        violations = []
        for i, s in zip(beyond.tolist(), segment.tolist(), strict=True):
            within = i - int(starts[s])
            violations.append(
                Violation(
                    FEATURE_OUT_OF_RANGE,
                    beyond_limit_message(features[i]),
                    row=batch.first_rows[s] + within,
                    date=str(batch.dates[s][within]),
                    symbol=batch.symbols[s],
                )
            )
        raise OHLCVValidationError(violations)

    def _predict(self, batch: _Batch) -> pa.Table:
        if not batch.features:
            return self.schema.empty_table()
        features = np.concatenate(batch.features)
        self._check_limit(batch, features)
        m = self.models
        probability_up = m.direction.predict(features)
        regime = self.regime.posteriors(batch.regime)
        known = ~np.isnan(regime).any(axis=1)
        state = np.where(known, np.argmax(np.where(known[:, None], regime, 0.0), axis=1), 0)
        columns: dict[str, Any] = {
            SYMBOL_COLUMN: _repeated(batch.symbols, np.repeat(np.arange(len(batch.counts)), batch.counts)),
            "date": pa.array(np.concatenate(batch.dates), pa.date32()),
            "expected_log_return_lightgbm": m.return_lightgbm.predict(features),
            "expected_log_return_random_forest": m.return_random_forest.predict(features),
            "probability_up": probability_up,
            "direction": _repeated(["down", "up"], probability_up >= m.direction.threshold),
            "annualized_volatility": m.volatility.predict(features),
            "regime": _repeated(self.state_names, state, missing=~known),
        }
        for j, name in enumerate(self.state_names):
            columns[f"regime_probability_{name}"] = regime[:, j]
        return pa.Table.from_pydict(columns, schema=self.schema)


def _repeated(values: list[str], indices: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """A string column of ``values[indices]`` (null where ``missing``), built without a Python string per row."""
    return pa.array(values, pa.string()).take(pa.array(indices.astype(np.int32), mask=missing))
