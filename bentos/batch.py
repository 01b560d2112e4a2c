"""Batch inference over files: the service's runners, in process, on every (symbol, date) of a long OHLCV file.

``python -m bentos.batch score bars.parquet predictions.parquet`` (or :func:`score_file`) reads Parquet or CSV with
the columns symbol, date, open, high, low, close, volume and writes one Parquet row per (symbol, date) that has at
least ``DEFAULT_SPEC.min_bars`` bars up to that date, with the answers ``predict_all`` gives for the window ending
there. Price forecasts are not part of it: Prophet forecasts a symbol's future, not a row.

The input must be grouped by symbol with dates strictly increasing within each symbol (a file sorted by symbol,
date is). Chunks of ``chunk_rows`` rows are read, validated with the shared OHLCV contract, and scored; memory stays
flat whatever the file's length or number of symbols. Three modules, imports running down:

    bentos/batch.py          this entry point: score_file and the ``score`` command
    bentos/batch_scoring.py  the models, the regime over each date's context, chunk after chunk (BatchScorer)
    bentos/batch_files.py    reading chunks of Parquet or CSV, the output's schema
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pyarrow.parquet as pq
import typer

from bentos.batch_files import DEFAULT_CHUNK_ROWS, TEXT_COLUMNS, BatchInputError, read_chunks
from bentos.batch_scoring import (
    CARRY_BARS,
    BatchModels,
    BatchScorer,
    RegimeFilter,
    production_manifest,
)
from bentos.production import ProductionManifestError, read_manifest
from bentos.runners import ModelMismatchError
from features import DEFAULT_SPEC, OHLCVValidationError

__all__ = [
    "CARRY_BARS",
    "DEFAULT_CHUNK_ROWS",
    "BatchInputError",
    "BatchModels",
    "BatchSummary",
    "RegimeFilter",
    "ScoreProgress",
    "app",
    "production_manifest",
    "read_chunks",
    "score_file",
]


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
