"""Batch inference's files: reading an OHLCV file in chunks (Parquet or CSV) and the output's Parquet schema.

Reading knows nothing of the models: it checks the columns and yields chunks of rows with their place in the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bentos.inputs import REGIME_CONTEXT_ROWS
from features import DEFAULT_SPEC, OHLCV_COLUMNS, OHLCVValidationError, Violation
from features.ohlcv import SYMBOL_COLUMN, Rule

INPUT_COLUMNS: tuple[str, ...] = (SYMBOL_COLUMN, *OHLCV_COLUMNS)
DEFAULT_CHUNK_ROWS = 100_000
#: Output columns written with dictionary encoding (their values repeat; the float columns' do not).
TEXT_COLUMNS = (SYMBOL_COLUMN, "direction", "regime")
_PARQUET = (".parquet", ".pq")
_CSV = (".csv",)


class BatchInputError(ValueError):
    """The input file cannot be scored as a whole (format, path); row-level problems raise OHLCVValidationError."""


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
            dtype={SYMBOL_COLUMN: str, "date": object},  # dates as text: the contract's one date rule reads them
            chunksize=chunk_rows,
        )
        for frame in reader:
            yield Chunk(frame, first, min(handle.tell() / total, 1.0))
            first += len(frame)


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
