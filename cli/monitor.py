"""``mlops monitor``: the live loop's commands (issue 16); today, ingesting the service's recorded answers."""

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
