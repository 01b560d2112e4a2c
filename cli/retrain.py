"""``mlops retrain``: run the retrain flow once here, or serve it as a deployment on a cron schedule.

Prefect is imported through ``training.flows.retrain``, which sets its quiet, offline defaults first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from cli.output import SchedulerOption
from data.snapshots import SnapshotError
from data.sources import EMBEDDED_SYMBOLS
from training.flows.retrain import FLOW_NAME, RetrainSettings, dask_runner, retrain, thread_runner
from training.flows.summary import RetrainFailed, model_table, summary_markdown

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from rich.console import Console

retrain_app = typer.Typer(help="Retrain, gate, promote and rebuild with Prefect (once, or on a schedule).")

NO_SERVER = (
    "No PREFECT_API_URL: runs triggered with `prefect deployment run` (from a shell with the same PREFECT_HOME) "
    "start here, but the cron schedule will not fire: Prefect's temporary local API has no scheduler. For the "
    "schedule: `prefect server start` in another shell, then `export PREFECT_API_URL=http://127.0.0.1:4200/api` "
    "here and where you trigger runs."
)


@retrain_app.command("run")
def run_command(
    quick: Annotated[bool, typer.Option(help="Quick training mode (small models, two test years).")] = False,
    source: Annotated[
        str, typer.Option(help="embedded (offline), yfinance, or synthetic (scale runs only: never for quality).")
    ] = "embedded",
    ticker: Annotated[
        list[str] | None, typer.Option("--ticker", "-t", help="yfinance ticker (repeat); MLOPS_RETRAIN_TICKERS.")
    ] = None,
    symbols: Annotated[int, typer.Option(min=1, help="Symbols of a synthetic universe.")] = 200,
    years: Annotated[float, typer.Option(min=1.0, help="Years of a synthetic universe.")] = 15.0,
    seed: Annotated[int, typer.Option(help="Seed of a synthetic universe.")] = 0,
    start: Annotated[str | None, typer.Option(help="First date to pull (yfinance).")] = None,
    end: Annotated[str | None, typer.Option(help="Last date to pull, exclusive (yfinance).")] = None,
    snapshot: Annotated[str | None, typer.Option(help="Train on this snapshot instead of pulling.")] = None,
    use_cached_on_failure: Annotated[
        bool,
        typer.Option(help="If the pull fails, train on the latest cached snapshot of the same symbols instead."),
    ] = False,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model(s) to retrain; all by default.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Retrain even models the store already has for this snapshot.")] = False,
    rules: Annotated[
        Path | None, typer.Option(help="TOML file overriding keys of training/flows/gate_rules.toml.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Worker processes of the local Dask cluster (default: one per core); in process, models at once.",
        ),
    ] = None,
    scheduler: SchedulerOption = None,
    local_cluster_min_symbols: Annotated[
        int | None,
        typer.Option(min=1, help="Fewest symbols for which a local cluster is started (fewer run in this process)."),
    ] = None,
    containerize: Annotated[
        bool, typer.Option(help="Also build the Bento's OCI image and smoke-test it (see `mlops image`).")
    ] = False,
) -> None:
    """Run the flow once and print what it did; exit 1 if it failed.

    Its tasks run on a Dask cluster through prefect-dask: the one named by --scheduler (or MLOPS_DASK_SCHEDULER),
    else a local cluster of worker processes when the universe has enough symbols (training/run.py says the rule),
    else in this process.
    """
    from rich.console import Console

    from cluster import ClusterSettings
    from training.run import LOCAL_CLUSTER_MIN_SYMBOLS, training_client

    console = Console()
    console.print(
        f"retrain ({'quick' if quick else 'full'} mode): pull, validate, train, gate, promote, build, smoke-test. "
        "Prefect logs at WARNING; PREFECT_LOGGING_LEVEL=INFO shows each step.",
        highlight=False,
    )
    settings = ClusterSettings(scheduler=scheduler, workers=workers)
    parameters: dict[str, Any] = {
        "quick": quick,
        "source": source,
        "tickers": ticker,
        "synthetic": (symbols, years, seed),
        "start": start,
        "end": end,
        "snapshot": snapshot,
        "use_cached_on_failure": use_cached_on_failure,
        "models": model,
        "force": force,
        "rules_path": rules,
        "containerize": containerize,
    }
    try:
        size = universe_size(source, ticker, snapshot, symbols)
        threshold = local_cluster_min_symbols or LOCAL_CLUSTER_MIN_SYMBOLS
        with training_client(settings, size, threshold) as client:
            if client is None:
                runnable = retrain if workers is None else retrain.with_options(task_runner=thread_runner(workers))
                address = None
            else:
                address = str(client.scheduler_info()["address"])
                console.print(f"on the Dask cluster at {address}", highlight=False)
                runnable = retrain.with_options(task_runner=dask_runner(address))
            state = runnable(**parameters, scheduler=address, return_state=True)
    except (ValueError, OSError, SnapshotError) as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error
    outcome = state.result(raise_on_failure=False)
    summary = outcome.summary if isinstance(outcome, RetrainFailed) else outcome
    if not isinstance(summary, dict):
        console.print(f"[red]the flow failed before it could report:[/red] {outcome}")
        raise typer.Exit(1)
    print_summary(console, summary)
    if state.is_failed():
        raise typer.Exit(1)


def universe_size(source: str, tickers: list[str] | None, snapshot: str | None, synthetic_symbols: int = 0) -> int:
    """How many symbols the run trains on: the snapshot's, or those the source is asked for."""
    if snapshot is not None:
        from data.settings import DataSettings
        from data.snapshots import SnapshotStore

        return len(SnapshotStore(DataSettings().snapshots).info(snapshot).symbols)
    if source == "embedded":
        return len(EMBEDDED_SYMBOLS)
    if source == "synthetic":
        return synthetic_symbols
    return len(tickers or RetrainSettings().tickers)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.5g}"


def print_summary(console: Console, summary: dict[str, Any]) -> None:
    """The model table, then the run's Markdown summary, rendered for the terminal."""
    from rich.markdown import Markdown
    from rich.table import Table

    table = Table("model", "origin", "metric", "challenger", "best baseline", "vs production (same folds)", "decision")
    for row in model_table(summary):
        baseline = f"{row['best baseline']} {_number(row['baseline value'])}".strip()
        versus = (
            f"{_number(row['challenger on shared folds'])} vs {_number(row['production on shared folds'])} "
            f"({row['shared folds']} folds)"
            if row["shared folds"]
            else ""
        )
        value = _number(row["challenger value"])
        table.add_row(row["model"], row["origin"], row["metric"], value, baseline, versus, row["decision"])
    if table.rows:
        console.print(table)
    console.print(Markdown(summary_markdown(summary)))


def retrain_deployment(name: str, cron: str, parameters: dict[str, Any]) -> RunnerDeployment:
    """The flow as a deployment on ``cron`` with these default parameters (loaded by module path when it runs)."""
    from prefect.types.entrypoint import EntrypointType

    deployment = retrain.to_deployment(
        name=name,
        cron=cron,
        parameters=parameters,
        description="Pull, validate, train, gate, promote, build and smoke-test (training/flows/retrain.py).",
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    return cast("RunnerDeployment", deployment)  # synchronous here: Prefect's dispatch types it as maybe a coroutine


@retrain_app.command("serve")
def serve_command(
    name: Annotated[str | None, typer.Option(help="Deployment name (default: MLOPS_RETRAIN_DEPLOYMENT_NAME).")] = None,
    cron: Annotated[str | None, typer.Option(help="Cron schedule (default: MLOPS_RETRAIN_CRON).")] = None,
    quick: Annotated[bool, typer.Option(help="Scheduled runs use the quick training mode.")] = False,
    source: Annotated[str, typer.Option(help="embedded or yfinance.")] = "embedded",
    ticker: Annotated[list[str] | None, typer.Option("--ticker", "-t", help="yfinance ticker (repeat).")] = None,
    use_cached_on_failure: Annotated[
        bool, typer.Option(help="Fall back on the latest snapshot of the same symbols.")
    ] = False,
) -> None:
    """Serve the flow as a deployment on a cron schedule (no work pool needed); Ctrl-C stops it.

    The schedule fires against a Prefect server (``prefect server start``, then ``PREFECT_API_URL`` in both shells).
    Without one, runs start when triggered with ``prefect deployment run`` from a shell with the same PREFECT_HOME.
    """
    from prefect import serve
    from prefect.settings import PREFECT_API_URL

    settings = RetrainSettings()
    deployment_name = name or settings.deployment_name
    schedule = cron or settings.cron
    parameters = {"quick": quick, "source": source, "tickers": ticker, "use_cached_on_failure": use_cached_on_failure}
    typer.echo(
        f"serving {FLOW_NAME}/{deployment_name} on '{schedule}'. "
        f"Trigger a run now with: prefect deployment run '{FLOW_NAME}/{deployment_name}'"
    )
    if not PREFECT_API_URL.value():  # from the environment or the active Prefect profile
        typer.echo(NO_SERVER)
    serve(retrain_deployment(deployment_name, schedule, parameters))
