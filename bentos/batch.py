"""Batch inference over files: the service's runners, in process, on every (symbol, date) of a long OHLCV file.

``python -m bentos.batch score bars.parquet predictions.parquet`` (or :func:`score_file`) reads Parquet or CSV with
the columns symbol, date, open, high, low, close, volume and writes one Parquet row per (symbol, date) that has at
least ``DEFAULT_SPEC.min_bars`` bars up to that date, with the answers ``predict_all`` gives for the window ending
there. Price forecasts are not part of it: Prophet forecasts a symbol's future, not a row.

The input must be grouped by symbol with dates strictly increasing within each symbol (a file sorted by symbol,
date is). Then only one symbol is open at a time and memory stays flat, whatever the file's length or number of
symbols: chunks of ``chunk_rows`` rows are read, validated with the shared OHLCV contract, and scored; between chunks
only the open symbol's last ``CARRY_BARS`` bars are kept. Rows in errors are numbered from 0, as in the file
without its header.

The regime of a date is point in time and exactly the service's: the forward-filtered HMM posterior given the
``REGIME_CONTEXT_ROWS`` feature rows ending at that date (fewer near the start of a symbol), which is what
``detect_regime`` answers for any window of at least ``lookback + REGIME_CONTEXT_ROWS`` bars ending there (or for the
symbol's whole history up to it, when shorter). :class:`RegimeFilter` computes it for all dates at once.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import bentoml
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from bentoml.exceptions import NotFound

from bentos.inputs import REGIME_CONTEXT_ROWS
from bentos.production import ProductionManifestError, bento_tags, production_tags, read_manifest
from bentos.regime_model import RegimeModel, observation_matrix
from bentos.runners import BoosterRunner, DirectionRunner, ForestRunner, ModelMismatchError, RegimeRunner, load_runner
from bentos.settings import ServiceSettings
from features import DEFAULT_SPEC, OHLCV_COLUMNS, Bars, OHLCVValidationError, Violation, validate_ohlcv
from features.catalog import PER_ROW_MODELS
from features.ohlcv import SYMBOL_COLUMN, Rule

INPUT_COLUMNS: tuple[str, ...] = (SYMBOL_COLUMN, *OHLCV_COLUMNS)
#: The served models batch inference uses (price_prophet forecasts per symbol, not per row).
BATCH_MODELS = PER_ROW_MODELS
#: Bars kept per symbol between chunks: the first new row needs its regime context and each context row its lookback.
CARRY_BARS = DEFAULT_SPEC.lookback + REGIME_CONTEXT_ROWS - 1
DEFAULT_CHUNK_ROWS = 100_000
SYMBOL_NOT_GROUPED = "symbol_not_grouped"
TEXT_COLUMNS = (SYMBOL_COLUMN, "direction", "regime")
_PARQUET = (".parquet", ".pq")
_CSV = (".csv",)


class BatchInputError(ValueError):
    """The input file cannot be scored as a whole (format, path); row-level problems raise OHLCVValidationError."""


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
    volatility: BoosterRunner
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
            volatility=_runner("volatility_lightgbm", manifest["volatility_lightgbm"], BoosterRunner),
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
    """Forward-filtered HMM state probabilities for many dates at once, each over the service's context window.

    For the date at position t of a symbol (positions count its bars from 0), the context is the observation rows
    at positions ``s_t = max(lookback, t - context_rows + 1)`` to t, incomplete ones dropped: the rows the service
    decodes for a window ending at t. The filter is ``pi * b_{s_t}`` times ``A diag(b_p)`` for each later p (identity
    where the row is incomplete), normalised. Those products over windows of a fixed length come from prefix and
    suffix products within blocks of ``context_rows - 1`` positions: two k x k products per date, whatever the
    context, where the service's filter takes ``context_rows`` steps per window.
    """

    def __init__(
        self, model: RegimeModel, context_rows: int = REGIME_CONTEXT_ROWS, lookback: int = DEFAULT_SPEC.lookback
    ):
        if context_rows < 2:
            raise ValueError("the regime context needs at least two rows")
        self.model = model
        self.lookback = lookback
        self.block = context_rows - 1  # transitions in a full context window
        self.start = np.asarray(model.startprob, dtype=np.float64)
        self.transition = np.asarray(model.transmat, dtype=np.float64)

    def observations(self, feature_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The observation of every feature row and whether it is complete (as the service builds them)."""
        return observation_matrix(feature_rows, list(DEFAULT_SPEC.names), self.model.observation_defs)

    def emissions(self, observations: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Gaussian likelihood of each row under each state, scaled so its largest is 1 (1 everywhere if invalid)."""
        complete = np.where(valid[:, None], observations, 0.0)  # incomplete rows are skipped by the filter
        log_likelihood = self.model.log_densities(complete)  # the service's densities (RegimeModel)
        log_likelihood[~valid] = 0.0
        return np.exp(log_likelihood - log_likelihood.max(axis=1, keepdims=True))

    def posteriors(self, segments: list[tuple[int, np.ndarray, np.ndarray, int]]) -> np.ndarray:
        """State probabilities of the last ``n_emit`` rows of each segment, stacked (NaN where no context).

        A segment is ``(first_position, emissions, valid, n_emit)``: consecutive rows of one symbol from its first
        position, which must not come after the first context row of its first emitted row.
        """
        k, w, first_grid = self.start.shape[0], self.block, self.lookback + 1
        if not segments:
            return np.empty((0, k))
        shifts, n_blocks = [], 0
        for first, b, _, _ in segments:  # each segment owns the blocks its rows fall in
            low = max(first - first_grid, 0) // w
            shifts.append(n_blocks - low)
            n_blocks += max(first + b.shape[0] - 1 - first_grid, 0) // w - low + 1
        # each grid position's emissions and whether it is a step; one more block of identities means "no product"
        grid_emissions = np.ones((n_blocks + 1, w, k))
        is_step = np.zeros((n_blocks + 1, w), dtype=bool)
        for (first, b, valid, _), shift in zip(segments, shifts, strict=True):
            skip = max(first_grid - first, 0)  # rows before the grid are never a step
            at = shift * w + first + skip - first_grid
            grid_emissions.reshape(-1, k)[at : at + b.shape[0] - skip] = b[skip:]
            is_step.reshape(-1)[at : at + b.shape[0] - skip] = valid[skip:]
        products = self._block_products(grid_emissions, is_step)

        # every emitted row at once: its position t, where its segment's rows start, and its segment's blocks
        emissions = np.concatenate([b for _, b, _, _ in segments])
        valid = np.concatenate([v for _, _, v, _ in segments])
        emitted = np.concatenate([f + np.arange(b.shape[0] - n, b.shape[0]) for f, b, _, n in segments])
        counts = [n for *_, n in segments]
        row_of_first = np.cumsum([0, *(b.shape[0] for _, b, _, _ in segments)])[:-1]
        row_shift = np.repeat(row_of_first - np.asarray([f for f, *_ in segments]), counts)
        block_shift = np.repeat(np.asarray(shifts), counts)
        context_start = np.maximum(self.lookback, emitted - w)
        grid = emitted - first_grid
        block, offset = grid // w + block_shift, grid % w
        # the products run over (context_start, t]: a prefix of t's block, preceded by a suffix of the block before
        # unless the context starts at the lookback or on a block boundary
        on_grid = grid >= 0
        two_blocks = (grid >= w) & (offset < w - 1)
        suffixes = products[
            np.where(two_blocks, w - 2 - offset, 0), :, :, n_blocks + 1 + np.where(two_blocks, block - 1, n_blocks)
        ]
        prefixes = products[np.where(on_grid, offset, 0), :, :, np.where(on_grid, block, n_blocks)]
        result = self.start[None, :] * emissions[context_start + row_shift]
        result = np.einsum("nk,nkl->nl", np.einsum("nk,nlk->nl", result, suffixes), prefixes)
        result /= result.sum(axis=1, keepdims=True)
        # an incomplete first context row has no start vector: filter from the first complete one instead
        for i in np.flatnonzero(~valid[context_start + row_shift]):
            rows = np.arange(context_start[i], emitted[i] + 1) + row_shift[i]
            rows = rows[valid[rows]]
            result[i] = self.filter(emissions[rows]) if rows.size else np.full(k, np.nan)
        return result

    def _block_products(self, emissions: np.ndarray, is_step: np.ndarray) -> np.ndarray:
        """Products of the steps ``A diag(b)`` within each block, each scaled by a constant, as ``(w, k, k, 2 blocks)``.

        ``[j, ..., g]`` is block g's product of its first j + 1 steps (prefix); ``[j, ..., blocks + g]`` the transpose
        of the product of its last j + 1 (suffix): the same forward recursion on transposed steps in reverse order.
        Blocks lie along the last axis, so each step of the recursion is a few whole-array operations.
        """
        blocks, w, k = emissions.shape
        steps = np.where(
            is_step.T[:, None, None, :],
            self.transition[None, :, :, None] * emissions.transpose(1, 2, 0)[:, None, :, :],
            np.eye(k)[None, :, :, None],
        )
        factors = np.concatenate((steps, steps[::-1].transpose(0, 2, 1, 3)), axis=3)
        products = np.empty_like(factors)
        products[0] = factors[0]
        terms = np.empty((k, k, k, 2 * blocks))
        for j in range(1, w):
            np.multiply(products[j - 1][:, :, None, :], factors[j][None, :, :, :], out=terms)
            np.add.reduce(terms, axis=1, out=products[j])
            if j % 4 == 0:  # row sums of the steps are at most 1: rescale now and then so products never underflow
                products[j] /= products[j].sum(axis=(0, 1))
        return products

    def filter(self, emissions: np.ndarray) -> np.ndarray:
        """The forward filter at the last of a sequence of (scaled) emission rows."""
        alpha = self.start * emissions[0]
        alpha /= alpha.sum()
        for row in emissions[1:]:
            alpha = (alpha @ self.transition) * row
            alpha /= alpha.sum()
        return alpha


# ---------------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Chunk:
    frame: pd.DataFrame
    first_row: int
    fraction_read: float


def _missing_columns(present: list[str]) -> None:
    missing = [name for name in INPUT_COLUMNS if name not in present]
    if missing:
        expected = ", ".join(INPUT_COLUMNS)
        raise OHLCVValidationError(
            [
                Violation(
                    Rule.MISSING_COLUMN, f"column {name!r} is missing (expected columns: {expected})", column=name
                )
                for name in missing
            ]
        )


def read_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    """The file's rows in chunks of at most ``chunk_rows``: Parquet batch by batch, CSV with a chunked reader."""
    suffix = path.suffix.lower()
    if suffix in _PARQUET:
        yield from _parquet_chunks(path, chunk_rows)
    elif suffix in _CSV:
        yield from _csv_chunks(path, chunk_rows)
    else:
        raise BatchInputError(f"{path}: unknown file type {suffix!r}; use {', '.join(_PARQUET + _CSV)}")


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    source = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering reads far ahead of the batch being decoded
    _missing_columns(source.schema_arrow.names)
    total = max(source.metadata.num_rows, 1)
    first = 0
    for batch in source.iter_batches(batch_size=chunk_rows, columns=list(INPUT_COLUMNS), use_threads=False):
        dates = batch.column("date")
        if pa.types.is_date(dates.type):  # to_pandas would give Python date objects, slow to validate
            batch = batch.set_column(batch.schema.get_field_index("date"), "date", dates.cast(pa.timestamp("s")))
        yield Chunk(batch.to_pandas(), first, (first + batch.num_rows) / total)
        first += batch.num_rows


def _csv_chunks(path: Path, chunk_rows: int) -> Iterator[Chunk]:
    _missing_columns(list(pd.read_csv(path, nrows=0).columns))
    total = max(path.stat().st_size, 1)
    first = 0
    with path.open("rb") as handle:
        reader = pd.read_csv(
            handle,
            usecols=list(INPUT_COLUMNS),
            dtype={SYMBOL_COLUMN: str},
            parse_dates=["date"],
            chunksize=chunk_rows,
        )
        for frame in reader:
            yield Chunk(frame, first, min(handle.tell() / total, 1.0))
            first += len(frame)


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

    def score(self, chunk: pd.DataFrame, first_row: int) -> pa.Table:
        """The predictions of the chunk's rows that have enough history, or OHLCVValidationError naming rows."""
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
                bars, first_position = _concat(self.open.bars, new), self.open.first_position
            else:
                self._close_open_symbol()
                bars, first_position = new, 0
            self._add(batch, symbol, bars, first_position, end - start)
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

    def _add(self, batch: _Batch, symbol: str, bars: Bars, first_position: int, n_new: int) -> None:
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
        batch.dates.append(bars.dates[n - n_emit :])
        batch.features.append(rows[context - n_emit :])
        emissions = self.regime.emissions(observations, valid)
        batch.regime.append((first_position + n - context, emissions, valid, n_emit))

    def _predict(self, batch: _Batch) -> pa.Table:
        if not batch.features:
            return self.schema.empty_table()
        features = np.concatenate(batch.features)
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


def output_schema(state_names: list[str], tags: Mapping[str, str]) -> pa.Schema:
    """The output's columns, with the model versions, FeatureSpec and regime context in its metadata."""
    number = pa.float64()
    fields = [
        pa.field(SYMBOL_COLUMN, pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("expected_log_return_lightgbm", number),
        pa.field("expected_log_return_random_forest", number),
        pa.field("probability_up", number),
        pa.field("direction", pa.string()),
        pa.field("annualized_volatility", number),
        pa.field("regime", pa.string()),
        *(pa.field(f"regime_probability_{name}", number) for name in state_names),
    ]
    metadata = {
        "models": dict(tags),
        "feature_spec": DEFAULT_SPEC.version_hash,
        "min_bars": DEFAULT_SPEC.min_bars,
        "regime_context_rows": REGIME_CONTEXT_ROWS,
    }
    return pa.schema(fields, metadata={"mlops_finance": json.dumps(metadata)})


# ---------------------------------------------------------------------------------------------------- entry point


@dataclass(frozen=True)
class ScoreProgress:
    """How far :func:`score_file` is, after each chunk."""

    rows_read: int
    rows_scored: int
    fraction_read: float


@dataclass(frozen=True)
class BatchSummary:
    input_path: Path
    output_path: Path
    rows_read: int
    rows_scored: int
    symbols: int
    chunks: int
    seconds: float
    models: dict[str, str]

    @property
    def rows_skipped(self) -> int:
        """Rows with fewer than ``min_bars`` bars of history up to them (not scored)."""
        return self.rows_read - self.rows_scored

    @property
    def rows_per_second(self) -> float:
        return self.rows_scored / self.seconds if self.seconds > 0 else float("nan")


def score_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    manifest: Mapping[str, str] | None = None,
    bento: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    models: BatchModels | None = None,
    on_progress: Callable[[ScoreProgress], None] | None = None,
) -> BatchSummary:
    """Score every (symbol, date) of a long OHLCV file with enough history; write the predictions as Parquet.

    Models come from ``models`` (already loaded), a ``manifest`` (model name -> tag), a built ``bento``'s manifest,
    or by default the service's production manifest. Bad rows raise :class:`OHLCVValidationError` naming them; the
    output is written to a temporary file and only replaces ``output_path`` once the whole input is scored.
    """
    source, target = Path(input_path), Path(output_path)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if sum(x is not None for x in (manifest, bento, models)) > 1:
        raise ValueError("give at most one of manifest, bento and models")
    if not source.is_file():
        raise BatchInputError(f"no input file at {source}")
    if target.resolve() == source.resolve():
        raise BatchInputError("the output would overwrite the input: choose another output path")
    started = time.perf_counter()
    if models is None:
        models = BatchModels.load(manifest if manifest is not None else production_manifest(bento))
    scorer = BatchScorer(models)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    rows_read = rows_scored = chunks = 0
    try:
        # dictionary encoding only where values repeat: trying it on the float columns triples the write time
        with pq.ParquetWriter(partial, scorer.schema, use_dictionary=list(TEXT_COLUMNS)) as writer:
            for chunk in read_chunks(source, chunk_rows):
                table = scorer.score(chunk.frame, chunk.first_row)
                writer.write_table(table)
                rows_read += len(chunk.frame)
                rows_scored += table.num_rows
                chunks += 1
                if on_progress is not None:
                    on_progress(ScoreProgress(rows_read, rows_scored, chunk.fraction_read))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    symbols = len(scorer.closed) + (scorer.open is not None)
    return BatchSummary(
        source, target, rows_read, rows_scored, symbols, chunks, time.perf_counter() - started, models.tags
    )


# ---------------------------------------------------------------------------------------------------- CLI

app = typer.Typer(help="Batch inference over OHLCV files with the production models.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Batch inference over OHLCV files with the production models."""


@app.command()
def score(
    input_path: Annotated[Path, typer.Argument(help="Parquet or CSV: symbol, date, open, high, low, close, volume.")],
    output_path: Annotated[Path, typer.Argument(help="Parquet file to write, one row per scored (symbol, date).")],
    bento: Annotated[
        str | None, typer.Option(help="Serve the models of this built Bento (its shipped production manifest).")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="A production manifest file; default: what the registry calls production.")
    ] = None,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows read, validated and scored at a time.")] = (
        DEFAULT_CHUNK_ROWS
    ),
) -> None:
    """Score every (symbol, date) with at least the feature lookback of history; rows grouped by symbol."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if bento is not None and manifest is not None:
        raise typer.BadParameter("give --bento or --manifest, not both")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"))
    with Progress(*columns, TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bars:
        loading = bars.add_task("loading models", total=1)
        try:
            tags = read_manifest(manifest) if manifest is not None else production_manifest(bento)
            models = BatchModels.load(tags)
        except (ProductionManifestError, ModelMismatchError) as error:
            console.print(str(error), style="red", markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
        bars.update(loading, completed=1, description="models loaded")
        scoring = bars.add_task(f"scoring {input_path.name}", total=1.0)

        def report(progress: ScoreProgress) -> None:
            bars.update(
                scoring,
                completed=progress.fraction_read,
                description=f"scoring {input_path.name}: {progress.rows_read:,} rows read, "
                f"{progress.rows_scored:,} scored",
            )

        try:
            summary = score_file(input_path, output_path, models=models, chunk_rows=chunk_rows, on_progress=report)
        except (OHLCVValidationError, BatchInputError) as error:
            console.print(f"{input_path}: {error}", style="red", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
    console.print(
        f"{summary.rows_scored:,} of {summary.rows_read:,} rows scored ({summary.rows_skipped:,} with fewer than "
        f"{DEFAULT_SPEC.min_bars} bars of history), {summary.symbols:,} symbols, {summary.seconds:.1f} s "
        f"({summary.rows_per_second:,.0f} rows/s) -> {summary.output_path}"
    )


if __name__ == "__main__":
    app()
