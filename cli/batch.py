"""``mlops batch``: score bars with the production models (``bentos/batch.py`` for one file in one process)."""

from __future__ import annotations


def run(args: list[str]) -> None:
    """Run ``mlops batch`` with its command-line arguments."""
    import typer.main

    from bentos.batch import app as batch_app  # imported here: loading the models' libraries takes seconds

    command = typer.main.get_command(batch_app)
    command.main(args=["score", *args], prog_name="mlops batch", standalone_mode=True)
