"""``mlops data``: pull market data into snapshots, list them and show one."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.output import console, fail
from data.pull import PullError, pull
from data.settings import DataSettings
from data.snapshots import SnapshotError, SnapshotStore
from data.sources import EMBEDDED_SYMBOLS, CsvSource, EmbeddedSource, Source, YFinanceSource
from features.ohlcv import OHLCVValidationError

app = typer.Typer(help="Market data snapshots.", no_args_is_help=True)


class SourceName(StrEnum):
    embedded = "embedded"
    yfinance = "yfinance"
    csv = "csv"
    synthetic = "synthetic"


def store_from_settings() -> SnapshotStore:
    return SnapshotStore(DataSettings().snapshots)


def _source(
    name: SourceName,
    tickers: list[str] | None,
    start: str | None,
    end: str | None,
    path: Path | None,
    universe: tuple[int, float, int] = (200, 15.0, 0),
    allow_missing: bool = False,
) -> Source:
    settings = DataSettings()
    if name is SourceName.synthetic:
        from data.synthetic import SyntheticSource

        symbols, years, seed = universe
        try:
            return SyntheticSource(symbols=symbols, years=years, seed=seed)
        except ValueError as error:
            raise typer.BadParameter(str(error)) from error
    if name is SourceName.embedded:
        return EmbeddedSource(tuple(tickers) if tickers else EMBEDDED_SYMBOLS)
    if name is SourceName.yfinance:
        if not tickers:
            raise typer.BadParameter("the yfinance source needs at least one --ticker")
        return YFinanceSource.from_settings(tickers, start, end, settings, allow_missing=allow_missing)
    if path is None:
        raise typer.BadParameter("the csv source needs --path")
    return CsvSource(path, symbol=tickers[0] if tickers else None)


@app.command("pull")
def pull_command(
    source: Annotated[SourceName, typer.Option(help="Where the bars come from.")] = SourceName.embedded,
    ticker: Annotated[
        list[str] | None, typer.Option("--ticker", "-t", help="Ticker(s) to pull (repeat the option).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First date (yfinance), YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="End date, exclusive (yfinance), YYYY-MM-DD.")] = None,
    path: Annotated[Path | None, typer.Option(help="CSV file of bars (csv source).")] = None,
    symbols: Annotated[int, typer.Option(help="Symbols of a synthetic universe (scale tests only).")] = 200,
    years: Annotated[float, typer.Option(help="Years of daily bars of a synthetic universe.")] = 15.0,
    seed: Annotated[int, typer.Option(help="Seed of a synthetic universe: the same seed, the same bars.")] = 0,
    allow_missing: Annotated[
        bool,
        typer.Option("--allow-missing", help="yfinance: store the tickers that came back, recording the missing ones."),
    ] = False,
) -> None:
    """Pull bars, validate them and store them as an immutable snapshot; print its id."""
    chosen = _source(source, ticker, start, end, path, (symbols, years, seed), allow_missing)
    store = store_from_settings()
    expected = len(ticker) if ticker else (len(EMBEDDED_SYMBOLS) if source is SourceName.embedded else None)
    expected = symbols if source is SourceName.synthetic else expected
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(f"pulling from {source.value}", total=expected)
        try:
            info, created = pull(chosen, store, on_symbol=lambda s: progress.advance(task))
        except (PullError, OHLCVValidationError) as error:
            progress.stop()
            raise fail(error) from error
    state = "new snapshot" if created else "unchanged, already stored as"
    shown = ", ".join(info.symbols) if len(info.symbols) <= 10 else f"{len(info.symbols)} symbols"
    console.print(f"{state} [bold]{info.id}[/bold]: {shown} {info.start}..{info.end}, {info.rows} rows")
    if info.synthetic:
        console.print("[yellow]synthetic bars: for scale tests and benchmarks, never for quality figures[/yellow]")
    print_gaps(info.origin)


def print_gaps(origin: dict[str, object]) -> None:
    """The tickers a pull left out (with why) and those it kept but flagged, as its manifest records them."""
    for key, title in (("missing", "missing, not in the snapshot"), ("flagged", "kept, flagged")):
        entries = origin.get(key)
        if isinstance(entries, dict) and entries:
            console.print(f"[yellow]{title}[/yellow]: {len(entries)} ticker(s)")
            for ticker, why in entries.items():
                console.print(f"  {ticker}: {why}")


@app.command("list")
def list_command() -> None:
    """List the snapshots, oldest first."""
    store = store_from_settings()
    table = Table("id", "source", "symbols", "from", "to", "rows", "created (UTC)")
    for info in store.snapshots():
        table.add_row(
            info.id,
            info.source,
            ", ".join(info.symbols),
            info.start,
            info.end,
            str(info.rows),
            info.created_at[:19],
        )
    console.print(table if table.rows else f"no snapshots in {store.root}")


@app.command("show")
def show_command(
    snapshot: Annotated[str, typer.Argument(help="Snapshot id, unique prefix, or 'latest'.")] = "latest",
) -> None:
    """Show a snapshot's manifest and check that its bars still match its id."""
    store = store_from_settings()
    try:
        info = store.info(snapshot)
        store.load(info.id, verify=True)
    except SnapshotError as error:
        raise fail(error) from error
    console.print_json(json.dumps(info.to_dict()))
    print_gaps(info.origin)
    console.print(f"[green]verified[/green]: bars hash to {info.id}; stored at {store.path(info.id)}")
