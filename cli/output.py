"""What the commands print through: one console, and how an error ends a command."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console()


def fail(error: Exception) -> typer.Exit:
    """Print ``error`` in red and return the exit (status 1) to raise: ``raise fail(error) from error``."""
    console.print(f"[red]error:[/red] {escape(str(error))}")
    return typer.Exit(1)


# The options every command that runs on a Dask cluster takes (train, retrain run, batch universe).
SchedulerOption = Annotated[
    str | None, typer.Option(help="Dask scheduler of an existing cluster (tcp://HOST:8786); MLOPS_DASK_SCHEDULER.")
]
WorkersOption = Annotated[
    int | None, typer.Option(min=1, help="Worker processes of the local Dask cluster (default: one per core).")
]


def record_answers_under_home() -> None:
    """Point a service this process starts at ``$MLOPS_HOME/data/monitoring/logs`` for its recorded answers, unless
    ``MLOPS_MONITOR_LOG_PATH`` says otherwise: a served Bento's own default would be inside the Bento (its ``src``
    folder in the store), which is no place for data."""
    import os

    from bentos.settings import ServiceSettings
    from data.settings import DataSettings

    if not os.environ.get("MLOPS_MONITOR_LOG_PATH"):
        path = ServiceSettings(home=DataSettings().home).monitor_logs
        os.environ["MLOPS_MONITOR_LOG_PATH"] = str(path)
