"""``mlops``: the project's command line."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from data.cli import app as data_app
from data.cli import store_from_settings
from data.snapshots import SnapshotError
from features import DEFAULT_SPEC, validate_ohlcv

app = typer.Typer(help="Train, package and serve market-prediction models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


@app.command("features")
def features_command(
    snapshot: Annotated[str, typer.Option(help="Snapshot id, unique prefix, or 'latest'.")] = "latest",
) -> None:
    """Compute the features of every symbol in a snapshot and print a summary."""
    store = store_from_settings()
    try:
        info = store.info(snapshot)
        bars = store.load(info.id)
    except SnapshotError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(1) from error
    spec = DEFAULT_SPEC
    console.print(
        f"FeatureSpec {spec.version_hash}: {len(spec.names)} features, lookback {spec.lookback} bars; "
        f"snapshot {info.id}"
    )
    frames = []
    for symbol, group in bars.groupby("symbol", sort=True):
        features = spec.frame(validate_ohlcv(group.drop(columns="symbol").reset_index(drop=True)))
        frames.append(features.iloc[spec.lookback :])
        console.print(f"  {symbol}: {len(group)} bars -> {len(features) - spec.lookback} complete feature rows")
    summary = pd.concat(frames).describe().T
    table = Table("feature", "mean", "std", "min", "max", title="features across symbols")
    for name, row in summary.iterrows():
        table.add_row(str(name), *(f"{row[c]:.4g}" for c in ("mean", "std", "min", "max")))
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
