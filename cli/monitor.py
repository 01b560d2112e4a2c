"""``mlops monitor``: the live loop's commands (issue 16): ingest, run, status, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.output import console

app = typer.Typer(help="The live loop: what the service answered, stored for scoring and drift.", no_args_is_help=True)


@app.command("ingest")
def ingest_command(
    logs: Annotated[
        Path | None,
        typer.Option(help="The service's monitor log folder (default: MLOPS_MONITOR_LOG_PATH or its default)."),
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(help="SQLAlchemy URL of the prediction store (default: MLOPS_MONITOR_DATABASE_URL or SQLite)."),
    ] = None,
) -> None:
    """Store the recorded answers not stored yet (idempotent: run it as often as you like)."""
    from bentos.settings import ServiceSettings
    from monitoring.store import PredictionStore

    folder = logs or ServiceSettings().monitor_logs
    store = PredictionStore(database)
    report = store.ingest(folder)
    where = store.engine.url.render_as_string()  # the password hidden
    console.print(
        f"{report.files} log file(s) under {folder}: {report.lines} new line(s), {report.new} answer(s) stored, "
        f"{report.already_stored} already stored; the store holds {store.count()} ({where})"
    )
    for problem in report.unreadable[:20]:
        console.print(f"[yellow]unreadable[/yellow] {problem}")
    if len(report.unreadable) > 20:
        console.print(f"... and {len(report.unreadable) - 20} more unreadable line(s)")


@app.command("run")
def run_command(
    trigger: Annotated[
        bool, typer.Option(help="Trigger the retrain deployment when an alert rule holds (rate limited).")
    ] = True,
    source: Annotated[
        str | None, typer.Option(help="Pull the newest bars first, as `mlops retrain run` does (embedded, yfinance).")
    ] = None,
    ticker: Annotated[
        list[str] | None, typer.Option("--ticker", "-t", help="yfinance ticker (repeat); MLOPS_RETRAIN_TICKERS.")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First date to pull (yfinance).")] = None,
    end: Annotated[str | None, typer.Option(help="Last date to pull, exclusive (yfinance).")] = None,
) -> None:
    """Ingest, join with what happened, score, watch drift, report; retrain on evidence (the flow monitor, once).

    A failed pull does not stop it: it scores on the snapshots already stored and says so."""
    from bentos.production import ProductionManifestError
    from monitoring.flow import monitor

    try:
        result = monitor(trigger_retrain=trigger, source=source, tickers=ticker, start=start, end=end)
    except ProductionManifestError as error:  # nothing served to monitor: say what to do
        console.print(f"[red]error[/red] {error}")
        raise typer.Exit(1) from None
    console.print(result["pull"])
    for alert in result["alerts"]:
        console.print(f"[red]alert[/red] {alert}")
    trigger_result = result["trigger"]
    if trigger_result.get("triggered"):
        console.print(f"retrain triggered ({trigger_result['flow_run_id']}): {trigger_result['reason']}")
    else:
        console.print(f"no retrain triggered: {trigger_result['why']}")
    console.print(f"report {result['report']}\nstatus {result['status']}\nmetrics {result['metrics']}")
    _print_status(Path(result["status"]))


@app.command("status")
def status_command() -> None:
    """Per model, from the last monitor run: live metric, baseline, walk-forward band, drift, freshness."""
    from monitoring.job import MonitorSettings

    path = MonitorSettings().output() / "report" / "status.json"
    if not path.is_file():
        console.print(f"[red]no monitor run yet[/red] ({path} is missing): run `mlops monitor run`")
        raise typer.Exit(1)
    _print_status(path)


def _print_status(path: Path) -> None:
    import json

    from rich.table import Table

    from monitoring.flow import status_rows

    status = json.loads(path.read_text())
    rows = status_rows(status)
    table = Table(title=f"monitor run {status['at']} ({status['rows']} recorded answers)")
    for column in rows[0] if rows else []:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    for alert in status["alerts"]:
        console.print(f"[red]alert[/red] {alert}")


@app.command("serve")
def serve_command(
    cron: Annotated[str | None, typer.Option(help="Cron schedule (default: after the US close).")] = None,
) -> None:
    """Serve the flow as the deployment monitor/daily (no work pool needed); Ctrl-C stops it."""
    from prefect import serve

    from monitoring.flow import CRON, DEPLOYMENT_NAME, FLOW_NAME, monitor_deployment

    typer.echo(f"serving {FLOW_NAME}/{DEPLOYMENT_NAME}; run it now with: prefect deployment run "
               f"'{FLOW_NAME}/{DEPLOYMENT_NAME}'")  # fmt: skip
    serve(monitor_deployment(cron=cron or CRON))
