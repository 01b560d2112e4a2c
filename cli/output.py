"""What the commands print through: one console, and how an error ends a command."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

console = Console()


def fail(error: Exception) -> typer.Exit:
    """Print ``error`` in red and return the exit (status 1) to raise: ``raise fail(error) from error``."""
    console.print(f"[red]error:[/red] {escape(str(error))}")
    return typer.Exit(1)
