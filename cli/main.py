"""``mlops``: the project's command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.data import app as data_app
from cli.data import store_from_settings
from cli.models import app as models_app
from cli.monitor import app as monitor_app
from cli.output import SchedulerOption, WorkersOption, console, fail, record_answers_under_home
from data.snapshots import SnapshotError
from features import DEFAULT_SPEC, validate_ohlcv

app = typer.Typer(help="Train, package and serve market-prediction models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(monitor_app, name="monitor")


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
        raise fail(error) from error
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


@app.command("train")
def train_command(
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="Model(s) to train (repeat); all six by default.")
    ] = None,
    snapshot: Annotated[str, typer.Option(help="Snapshot id, unique prefix, or 'latest'.")] = "latest",
    quick: Annotated[bool, typer.Option(help="Small models and two test years: for tests and smoke runs.")] = False,
    promote: Annotated[bool, typer.Option(help="Promote every model trained in this run to production.")] = False,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = None,
    local_cluster_min_symbols: Annotated[
        int | None,
        typer.Option(min=1, help="Fewest symbols for which a local cluster is started (fewer train in this process)."),
    ] = None,
) -> None:
    """Evaluate walk-forward, fit, audit and save models to the BentoML store; write the report.

    The work runs on a Dask cluster: the one named by --scheduler (or MLOPS_DASK_SCHEDULER), else a local cluster of
    worker processes when the snapshot has enough symbols (training/run.py says the rule), else in this process.
    """
    from cluster import ClusterSettings, TasksFailed
    from features.catalog import MODEL_NAMES
    from training.config import TrainingConfig
    from training.registry.promotion import PromotionError, Registry
    from training.run import LOCAL_CLUSTER_MIN_SYMBOLS, train, training_client

    names = tuple(model) if model else MODEL_NAMES
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise typer.BadParameter(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODEL_NAMES)}")
    config = TrainingConfig.quick() if quick else TrainingConfig()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("training", total=len(names))

        def on_progress(name: str, state: str) -> None:
            progress.update(task, description=f"{name}: {state}")
            if state in {"done", "failed"}:
                progress.advance(task)

        try:
            store = store_from_settings()
            info = store.info(snapshot)
            settings = ClusterSettings(scheduler=scheduler, workers=workers)
            threshold = local_cluster_min_symbols or LOCAL_CLUSTER_MIN_SYMBOLS
            with training_client(settings, len(info.symbols), threshold) as client:
                where = (
                    "in this process"
                    if client is None
                    else f"on the Dask cluster at {client.scheduler_info()['address']}"
                )
                progress.console.print(f"training {len(info.symbols)} symbol(s) of snapshot {info.id} {where}")
                run = train(info.id, names, config, store=store, on_progress=on_progress, client=client)
        except (SnapshotError, TasksFailed, ValueError, OSError) as error:
            raise fail(error) from error
    for result in run.results:
        metric = result.evaluation.primary_metric
        baselines = ", ".join(f"{b} {m.get(metric, float('nan')):.4g}" for b, m in result.evaluation.baselines.items())
        audit = "" if result.card.leakage_audit["passed"] else " [yellow](leakage audit: suspicious)[/yellow]"
        console.print(
            f"[green]saved[/green] {result.tag}: {metric} {result.evaluation.metrics[metric]:.4g}"
            f" (baselines: {baselines or 'none'}){audit}"
        )
    for name, message in run.failures.items():
        console.print(f"[red]failed[/red] {name}: {escape(message.splitlines()[0])}")
    console.print(f"report: {run.report_dir / 'index.html' if run.report_dir else 'not written'}")
    if promote and run.results:
        try:
            promoted = Registry().promote([r.tag for r in run.results], reason=f"mlops train --promote ({run.run_id})")
        except PromotionError as error:
            raise fail(error) from error
        console.print(f"promoted: {', '.join(promoted.values()) or 'nothing new'}")
    if run.failures:
        raise typer.Exit(1)


@app.command("promote")
def promote_command(
    tags: Annotated[list[str], typer.Argument(help="name:version of each model to put in production.")],
    reason: Annotated[str, typer.Option(help="Why, for the registry's history.")] = "manual promotion",
) -> None:
    """Mark the given model versions as production (all or none)."""
    from training.registry.promotion import PromotionError, Registry

    try:
        promoted = Registry().promote(tags, reason=reason)
    except PromotionError as error:
        raise fail(error) from error
    console.print(json.dumps(promoted, indent=2) if promoted else "already in production: nothing changed")


@app.command("rollback")
def rollback_command(
    model: Annotated[
        list[str] | None, typer.Argument(help="Model name(s); every model with an earlier version by default.")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why, for the registry's history.")] = "manual rollback",
) -> None:
    """Put back the previous production version of the given models."""
    from training.registry.promotion import PromotionError, Registry

    try:
        restored = Registry().rollback(model or None, reason=reason)
    except PromotionError as error:
        raise fail(error) from error
    console.print(json.dumps(restored, indent=2))


@app.command("build")
def build_command() -> None:
    """Build the Bento of the production versions (`bentoml build`); print its tag."""
    from bentos.production import ProductionManifestError
    from deploy.bento import build
    from training.registry.promotion import Registry

    try:
        tag = build(Registry().production())
    except (ProductionManifestError, RuntimeError) as error:
        raise fail(error) from error
    console.print(f"built Bento [bold]{tag}[/bold]")


@app.command("image")
def image_command(
    bento: Annotated[
        str | None, typer.Option(help="Bento tag to containerize; default: build a Bento of the production versions.")
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="docker, podman or buildah; default auto (MLOPS_IMAGE_BACKEND).")
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="auto (python:3.11-slim if it pulls, else built from the Debian mirror), registry, debian."),
    ] = None,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            help="CA bundle for build steps behind a TLS-intercepting proxy (a build secret, not in the image)."
        ),
    ] = None,
    refresh_base: Annotated[bool, typer.Option(help="Rebuild the cached Debian base (e.g. for updates).")] = False,
    install_tools: Annotated[
        bool, typer.Option(help="apt-get install buildah and debootstrap (root) if no image tool is usable.")
    ] = False,
    smoke: Annotated[bool, typer.Option(help="Start the image, wait for /readyz and call every method.")] = True,
) -> None:
    """Build the OCI image of the Bento (no Docker engine needed) and smoke-test it."""
    from pydantic import ValidationError

    from bentos.production import ProductionManifestError
    from deploy.bento import build
    from deploy.image import DEFAULT_IMAGE_BYTES, ImageSettings, bento_production, containerize, smoke_test_image
    from training.registry.promotion import Registry

    given: dict[str, Any] = {"backend": backend, "base": base, "ca_bundle": ca_bundle}
    given |= {"refresh_base": refresh_base or None, "install_tools": install_tools or None}
    try:
        settings = ImageSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        problems = "; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in error.errors())
        raise fail(ValueError(problems)) from error
    try:
        tag = bento or build(Registry().production())
        result = containerize(tag, settings, say=lambda line: console.print(escape(line), highlight=False))
        console.print(
            f"built [bold]{result.image}[/bold] with {result.backend} in {result.build_seconds:.0f} s: "
            f"{result.size_bytes / 1e6:.0f} MB ({result.size_bytes / DEFAULT_IMAGE_BYTES:.0%} of BentoML's default "
            f"1.51 GB), on {result.base_image}{' (cached)' if result.base_cached else ''}"
        )
        if smoke:
            report = smoke_test_image(result.image, bento_production(tag), settings.ready_timeout, settings)
            timings = ", ".join(f"{method} {ms:.0f} ms" for method, ms in report["milliseconds"].items())
            console.print(
                f"smoke test passed: ready in {report['ready_seconds']} s, every method answered ({escape(timings)})"
            )
    except (ProductionManifestError, RuntimeError) as error:
        raise fail(error) from error


@app.command("serve")
def serve_command(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    bento: Annotated[str | None, typer.Option(help="Serve this built Bento tag instead of the source tree.")] = None,
) -> None:
    """Serve the production models (from the source tree, or a built Bento) with `bentoml serve`."""
    import os

    from bentos.production import ProductionManifestError, production_tags
    from deploy.bento import SERVICE, serve_command

    if bento is None:
        try:
            production_tags()  # what the source service will serve: say now if nothing is in production
        except ProductionManifestError as error:
            raise fail(error) from error
    command = serve_command(bento or SERVICE, port, host)
    record_answers_under_home()
    console.print(f"serving on http://{host}:{port} (docs at /, health at /readyz): {' '.join(command[2:])}")
    os.execv(command[0], command)


@app.command(
    "batch",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def batch_command(ctx: typer.Context) -> None:
    """Score a file of bars with the production models: INPUT OUTPUT [--bento TAG] [--chunk-rows N] (see --help)."""
    from cli.batch import run

    run(list(ctx.args))


@app.command(
    "retrain",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def retrain_command(ctx: typer.Context) -> None:
    """Prefect flow: pull, validate, train, gate, promote, build, smoke-test: `run [...]` or `serve --cron ...`."""
    import typer.main

    from cli.retrain import retrain_app  # imported here: Prefect takes seconds to import

    typer.main.get_command(retrain_app).main(args=list(ctx.args), prog_name="mlops retrain", standalone_mode=True)


@app.command("demo")
def demo_command(
    port: Annotated[int, typer.Option(help="Port to serve the demo on.")] = 3000,
    quick: Annotated[bool, typer.Option(help="Quick training mode (small models, two test years).")] = False,
) -> None:
    """Pull the embedded data, train and promote the six models, build the Bento, serve it, show a request."""
    from cli.demo import run_demo

    run_demo(port, quick, lambda line: console.print(line, highlight=False, markup=False))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
