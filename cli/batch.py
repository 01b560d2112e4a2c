"""``mlops batch``: score bars with the production models.

``mlops batch INPUT OUTPUT`` scores one file in this process (``bentos/batch.py``); ``mlops batch universe OUTPUT``
scores a snapshot's symbols on a Dask cluster into a partitioned Parquet dataset (``scoring/universe.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.output import SchedulerOption, WorkersOption

#: Fewest symbols for which a universe batch without a scheduler address starts a local cluster. Below it, starting
#: the cluster and loading the models in every worker costs more than scoring in this process saves
#: (benchmarks/results/scale.md measures both).
BATCH_LOCAL_CLUSTER_MIN_SYMBOLS = 16

universe_app = typer.Typer(add_completion=False)


def run(args: list[str]) -> None:
    """Run ``mlops batch`` with its command-line arguments."""
    import typer.main

    if args[:1] == ["universe"]:
        command = typer.main.get_command(universe_app)
        command.main(args=args[1:], prog_name="mlops batch universe", standalone_mode=True)
        return
    from bentos.batch import app as batch_app  # imported here: loading the models' libraries takes seconds

    command = typer.main.get_command(batch_app)
    command.main(args=["score", *args], prog_name="mlops batch", standalone_mode=True)


@universe_app.command()
def universe(
    output: Annotated[Path, typer.Argument(help="Directory to write: symbol=<S>/part-0.parquet and scores.json.")],
    snapshot: Annotated[str, typer.Option(help="Snapshot id, unique prefix, or 'latest'.")] = "latest",
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", "-s", help="Score only these symbols (repeat); all by default.")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="Write rows dated on or after this day (YYYY-MM-DD); earlier bars are context.")
    ] = None,
    bento: Annotated[
        str | None, typer.Option(help="Score with the models of this built Bento (its shipped production manifest).")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option(help="A production manifest file; default: what the registry calls production.")
    ] = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    local_cluster_min_symbols: Annotated[
        int, typer.Option(min=1, help="Fewest symbols for which a local cluster is started (fewer: this process).")
    ] = BATCH_LOCAL_CLUSTER_MIN_SYMBOLS,
) -> None:
    """Score every (symbol, date) of a snapshot's symbols with the production models, on a Dask cluster.

    Rows are exactly those `mlops batch` gives for a file of the same bars. Each worker loads the models once and
    reads only the symbols it scores.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bentos.batch_scoring import production_manifest
    from bentos.production import ProductionManifestError, read_manifest
    from bentos.runners import ModelMismatchError
    from cli.data import store_from_settings
    from cli.output import console, fail
    from cluster import ClusterSettings, TasksFailed, cluster_for
    from data.snapshots import SnapshotError
    from features.dates import parse_day
    from scoring.universe import UniverseOutputError, score_universe

    if bento is not None and manifest is not None:
        raise typer.BadParameter("give --bento or --manifest, not both")
    try:
        first_day = None if start is None else parse_day(start)
    except ValueError as error:
        raise typer.BadParameter(f"--start: {error}") from error
    try:
        tags = read_manifest(manifest) if manifest is not None else production_manifest(bento)
        store = store_from_settings()
        info = store.info(snapshot)
    except (ProductionManifestError, ModelMismatchError, SnapshotError) as error:
        raise fail(error) from error
    count = len(symbol) if symbol else len(info.symbols)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("scoring", total=None)
        try:
            settings = ClusterSettings(scheduler=scheduler, workers=workers)
            with cluster_for(settings, count, local_cluster_min_symbols) as client:
                where = "in this process" if client is None else f"on {client.scheduler_info()['address']}"
                progress.console.print(f"scoring {count} symbol(s) of snapshot {info.id} {where}")
                summary = score_universe(
                    output,
                    tags,
                    store=store,
                    snapshot=info.id,
                    symbols=symbol,
                    start=first_day,
                    client=client,
                    on_done=lambda done, total: progress.update(bar, completed=done, total=total),
                )
        except (TasksFailed, UniverseOutputError, SnapshotError, ProductionManifestError, OSError) as error:
            raise fail(error) from error
    console.print(
        f"{summary.rows_scored:,} rows of {summary.symbols:,} symbols scored in {summary.tasks} tasks by "
        f"{summary.workers} worker process(es), {summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s) "
        f"-> {summary.output}"
    )
