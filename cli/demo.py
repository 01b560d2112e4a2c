"""The README's demo: pull the embedded data, train, promote, build the Bento, serve it, show a request that works."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from bentos.schemas import example_window
from cli.output import record_answers_under_home
from data.pull import pull
from data.settings import DataSettings
from data.snapshots import SnapshotStore
from data.sources import EmbeddedSource
from deploy.bento import build, serve_command
from deploy.smoke import wait_ready
from training.config import TrainingConfig
from training.registry.promotion import Registry
from training.run import train

Say = Callable[[str], None]


def write_example_requests(directory: Path) -> dict[str, Path]:
    """Request bodies for the demo's curl commands (a real 260-bar S&P 500 window)."""
    directory.mkdir(parents=True, exist_ok=True)
    bodies = {
        "predict_all": {"bars": example_window()},
        "predict_direction": {"bars": example_window()},
        "forecast_price": {"symbol": "^GSPC", "periods": 5},
    }
    paths = {}
    for name, body in bodies.items():
        paths[name] = directory / f"{name}.json"
        paths[name].write_text(json.dumps(body))
    return paths


def post(url: str, body_file: Path) -> str:
    response = httpx.post(
        url, content=body_file.read_bytes(), headers={"Content-Type": "application/json"}, timeout=60.0
    )
    response.raise_for_status()
    return json.dumps(response.json(), indent=2)


def run_demo(port: int, quick: bool, say: Say) -> None:
    settings = DataSettings()
    store = SnapshotStore(settings.snapshots)
    say("1/5 pulling the embedded S&P 500 and NASDAQ bars into a snapshot")
    info, _ = pull(EmbeddedSource(), store)
    say(f"    snapshot {info.id}: {', '.join(info.symbols)} {info.start}..{info.end}, {info.rows} rows")
    mode = "quick mode" if quick else "full walk-forward, about 4 minutes on 2 cores"
    say(f"2/5 training the six models ({mode})")
    run = train(info.id, config=TrainingConfig.quick() if quick else TrainingConfig(), store=store)
    if run.failures:
        raise RuntimeError(f"training failed for {', '.join(run.failures)}")
    for result in run.results:
        metric = result.evaluation.primary_metric
        baselines = ", ".join(f"{b} {m[metric]:.4g}" for b, m in result.evaluation.baselines.items() if metric in m)
        say(f"    {result.tag}: {metric} {result.evaluation.metrics[metric]:.4g} (baselines: {baselines or 'none'})")
    say(f"    report: {run.report_dir}/index.html")
    say("3/5 promoting them to production")
    Registry().promote([r.tag for r in run.results], reason=f"demo ({run.run_id})")
    say("4/5 building the Bento")
    tag = build(Registry().production())
    say(f"    {tag}")
    url = f"http://127.0.0.1:{port}"
    say(f"5/5 serving {tag} at {url}")
    record_answers_under_home()
    process = subprocess.Popen(serve_command(tag, port))
    try:
        wait_ready(url, process)
        requests = write_example_requests(settings.snapshots.parent / "requests")  # <home>/data, beside the snapshots
        command = (
            f"curl -s -X POST {url}/predict_direction -H 'Content-Type: application/json' "
            f"-d @{requests['predict_direction']}"
        )
        say(f"\nA request that works:\n  {command}\n")
        say(post(f"{url}/predict_direction", requests["predict_direction"]))
        say(
            f"\nMore: -d @{requests['predict_all']} to {url}/predict_all, -d @{requests['forecast_price']} to "
            f"{url}/forecast_price; API docs at {url}/ ; Ctrl-C stops the service."
        )
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)
    sys.exit(0)
