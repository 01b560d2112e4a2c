"""``mlops models``: the stored models, listed (``mlops models``) and kept in bounds."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from cli.output import console, fail

app = typer.Typer(help="The stored models: list them (no subcommand).")


@app.callback(invoke_without_command=True)
def list_command(
    ctx: typer.Context,
    all_versions: Annotated[
        bool, typer.Option("--all", help="Every stored version, not only the newest five.")
    ] = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="Every column (creation time, metric name, snapshot): needs ~130 columns.")
    ] = False,
) -> None:
    """List the stored models with their stage and headline metric against their best baseline."""
    if ctx.invoked_subcommand is not None:
        return
    from rich import box

    from training.evaluation.quant import headline
    from training.registry.promotion import Registry
    from training.registry.store import list_models

    production = set(Registry().production().values())
    # the narrow table fits 80 columns: names and versions whole, the metric named in its cell
    columns = ["model", "version", "stage", "score / best baseline", "skill"]
    if wide:
        columns = [
            "model",
            "version",
            "created (UTC)",
            "stage",
            "metric",
            "model",
            "best baseline",
            "skill",
            "rank IC [95 %]",
            "Sharpe after costs vs baseline",
            "snapshot",
        ]
    table = Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False)
    for column in table.columns:
        column.overflow = "fold"
    shown: dict[str, int] = {}
    for stored in list_models():
        shown[stored.name] = shown.get(stored.name, 0) + 1
        if shown[stored.name] > 5 and not all_versions and stored.tag not in production:
            continue
        stage = "production" if stored.tag in production else stored.labels.get("stage", "?")
        styled = f"[bold green]{stage}[/bold green]" if stage == "production" else stage
        created = f"{stored.created:%Y-%m-%d %H:%M}"
        card = stored.card_or_none()
        if card is None:
            cells = (
                [stored.name, stored.version, created, styled, "incomplete card"]
                if wide
                else [stored.name, stored.version, styled, "incomplete card"]
            )
            table.add_row(*cells)
            continue
        metric = card.primary_metric
        values = [m[metric] for m in card.baseline_metrics.values() if metric in m]
        best = (max(values) if card.higher_is_better else min(values)) if values else float("nan")
        skill = stored.metadata.get("skill")
        skill_cell = (
            "-" if not isinstance(skill, dict) else ("shown" if skill.get("shown") else "[yellow]none[/yellow]")
        )
        ic, sharpe = headline(card.quant)
        if wide:
            table.add_row(
                stored.name,
                stored.version,
                created,
                styled,
                metric,
                f"{card.metrics[metric]:.4g}",
                f"{best:.4g}",
                skill_cell,
                ic,
                sharpe,
                card.snapshot_id[:8],
            )
        else:  # the quant figures on lines of their own in the score's cell, to stay within 80 columns
            score = f"{metric} {card.metrics[metric]:.4g} / {best:.4g}"
            quant = [f"rank IC {ic}" if ic != "-" else "", f"Sharpe {sharpe}" if sharpe != "-" else ""]
            table.add_row(stored.name, stored.version, styled, "\n".join([score, *filter(None, quant)]), skill_cell)
    console.print(table if table.rows else "no models in the store yet: run `mlops train`")


@app.command("prune")
def prune_command(
    keep: Annotated[int, typer.Option(min=1, help="Versions (and Bentos) to keep beyond those still needed.")] = 3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
) -> None:
    """Remove model versions and Bentos beyond the newest KEEP; never production, its last KEEP rollback targets,
    or a model a kept Bento ships. Safe to interrupt: a rerun finishes the job."""
    from training.registry.promotion import RegistryBusyError
    from training.registry.prune import prune

    try:
        done = prune(
            keep,
            dry_run=dry_run,
            on_removed=lambda r: console.print(f"removed {r.kind} {r.tag} ({r.bytes / 1e6:.1f} MB)"),
        )
    except RegistryBusyError as error:
        raise fail(error) from error
    verb = "would free" if dry_run else "freed"
    if dry_run:
        for removal in done.remove:
            console.print(f"would remove {removal.kind} {removal.tag} ({removal.bytes / 1e6:.1f} MB)")
    for name, dropped in done.rollback_trim.items():
        console.print(
            f"{name}: rollback targets beyond the newest {keep} {'would be ' if dry_run else ''}dropped: "
            f"{', '.join(dropped)}"
        )
    console.print(f"{verb} {done.bytes / 1e6:.1f} MB: {len(done.remove)} removed, {len(done.kept)} kept")
