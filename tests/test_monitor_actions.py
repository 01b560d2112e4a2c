"""What the monitor does with its findings (issue 16): when it does not trigger a retrain and why, the retrain summary
naming its trigger, the Prometheus exposition, a real Pushgateway receiving it. The whole loop, with a real trigger
on a real Prefect API, is tests/test_live_loop.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest

from monitoring.job import ModelStatus, MonitorRun
from monitoring.metrics import PUSHGATEWAY_VARIABLE, publish
from monitoring.scorecard import Score
from monitoring.store import IngestReport
from monitoring.trigger import STATE_FILE, maybe_trigger
from tests.integration_helpers import free_port

NOW = datetime(2026, 12, 4, 22, 30, tzinfo=UTC)


def test_no_alert_or_triggering_off_runs_nothing(tmp_path: Path) -> None:
    quiet = maybe_trigger([], "retrain/daily", 168, True, tmp_path, NOW)
    assert quiet == {"triggered": False, "why": "no alert rule holds"}
    off = maybe_trigger(["x: drift alert"], "retrain/daily", 168, False, tmp_path, NOW)
    assert off["triggered"] is False and "MLOPS_MONITOR_TRIGGER_RETRAIN=false" in off["why"]
    assert off["reason"] == "monitor: x: drift alert"
    assert not (tmp_path / STATE_FILE).exists()


def test_the_rate_limit_holds_until_the_period_has_passed(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text('{"last_triggered_at": "2026-12-01T22:30:00+00:00"}')
    held = maybe_trigger(["x: drift alert"], "retrain/daily", 168, True, tmp_path, NOW)
    assert held["triggered"] is False
    assert held["why"] == (
        "rate limit: last triggered 2026-12-01T22:30:00+00:00, next allowed from 2026-12-08T22:30:00+00:00"
    )


def test_the_retrain_summary_says_what_triggered_it() -> None:
    from training.flows.summary import RunRecord, summary_markdown

    record = RunRecord(flow_run="r", mode="quick", rules="rules.toml", trigger="monitor: direction_lightgbm: drift")
    assert "Triggered by: monitor: direction_lightgbm: drift" in summary_markdown(record.to_dict())
    assert RunRecord(flow_run="r", mode="quick", rules="x").to_dict()["trigger"] == "asked for"


def _run() -> MonitorRun:
    rolling = pd.DataFrame({"as_of": ["2017-12-29"], "rows": [126], "model": [0.695], "majority": [0.69]})
    score = Score("direction_lightgbm", "v1", "log_loss", False, 250, "2017-01-03", "2017-12-29",
                  live={"log_loss": 0.69, "n": 250}, baselines={"majority": {"log_loss": 0.691}},
                  band=(0.68, 0.70), rolling=rolling, worse_than_baseline_days=3)  # fmt: skip
    status = ModelStatus("direction_lightgbm", "v1", None, score=score, pending=4)
    trigger = {"triggered": False, "why": "no alert rule holds"}
    return MonitorRun("2026-12-04T22:30:00+00:00", IngestReport(), 1250, {"direction_lightgbm": status},
                      pd.DataFrame(), trigger=trigger)  # fmt: skip


def test_the_metrics_textfile_holds_the_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PUSHGATEWAY_VARIABLE, raising=False)
    where = publish(_run(), tmp_path)
    text = (tmp_path / "mlops_monitor.prom").read_text()
    assert where == f"written to {tmp_path / 'mlops_monitor.prom'}"
    assert "mlops_monitor_recorded_answers 1250.0" in text
    assert (
        'mlops_monitor_live_metric{metric="log_loss",model="direction_lightgbm",version="v1",window="rolling"} 0.695'
        in text
    )
    assert 'mlops_monitor_walk_forward_band{bound="high",metric="log_loss",model="direction_lightgbm"} 0.7' in text
    assert 'mlops_monitor_days_worse_than_baseline{model="direction_lightgbm"} 3.0' in text


@pytest.fixture(scope="module")
def pushgateway() -> Iterator[str]:
    """A real Prometheus Pushgateway (Debian's package; apt-get installs it where missing, as root)."""
    binary = shutil.which("prometheus-pushgateway")
    if binary is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "prometheus-pushgateway"], capture_output=True, timeout=600)
        binary = shutil.which("prometheus-pushgateway")
    if binary is None:
        pytest.skip("no prometheus-pushgateway: `apt-get install prometheus-pushgateway` (as root) failed or is absent")
    port = free_port()
    process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_the_metrics_are_pushed_to_a_real_pushgateway(pushgateway: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PUSHGATEWAY_VARIABLE, pushgateway)
    assert publish(_run(), tmp_path) == f"pushed to {pushgateway} (job mlops_monitor)"
    scraped = httpx.get(f"{pushgateway}/metrics", timeout=5).text
    assert (
        'mlops_monitor_days_worse_than_baseline{instance="",job="mlops_monitor",model="direction_lightgbm"} 3'
        in scraped
    )
    assert not (tmp_path / "mlops_monitor.prom").exists()


def test_the_monitor_deployment_runs_the_flow_after_the_close() -> None:
    from monitoring.flow import CRON, monitor_deployment

    deployment = monitor_deployment()
    assert (deployment.name, deployment.flow_name) == ("daily", "monitor")
    assert [schedule.schedule.cron for schedule in deployment.schedules] == [CRON] == ["30 22 * * 1-5"]
    assert deployment.entrypoint == "monitoring.flow.monitor"


def test_the_monitor_pulls_first_as_a_retrain_run_would_and_a_failed_pull_scores_what_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from data.snapshots import SnapshotStore
    from monitoring.flow import pull_first

    monkeypatch.setenv("MLOPS_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    pulled = pull_first("embedded", None)
    (info,) = SnapshotStore(tmp_path / "snapshots").snapshots()
    assert pulled == f"pulled embedded: snapshot {info.id} (new), bars to {info.end}"
    assert pull_first("embedded", None) == f"pulled embedded: snapshot {info.id} (unchanged), bars to {info.end}"
    failed = pull_first("nowhere", None)
    assert failed.startswith("the nowhere pull failed (ValueError: unknown source 'nowhere'")
    assert failed.endswith("scored on the snapshots already stored")


def test_monitor_run_from_the_command_line(prefect_api, production_models, embedded_snapshot, tmp_path, monkeypatch):
    """`mlops monitor run` with nothing recorded yet: drift over the latest bars, no retrain asked for, where the
    report went; with nothing in production it says so and exits 1."""
    from typer.testing import CliRunner

    from cli.main import app

    store, _ = embedded_snapshot
    for key, value in {"MLOPS_MONITOR_LOG_PATH": tmp_path / "logs", "MLOPS_MONITOR_OUTPUT_DIR": tmp_path / "out",
                       "MLOPS_SNAPSHOT_DIR": store.root}.items():  # fmt: skip
        monkeypatch.setenv(key, str(value))
    (tmp_path / "logs").mkdir()
    result = CliRunner().invoke(app, ["monitor", "run", "--no-trigger"], env={"COLUMNS": "240"})
    assert result.exit_code == 0, result.output
    assert (
        "no pull asked for" in result.output and f"report {tmp_path / 'out' / 'report' / 'index.html'}" in result.output
    )
    assert "(bars)" in result.output  # every model's drift over the trained symbols' latest bars
    monkeypatch.setenv("MLOPS_PRODUCTION_FILE", str(tmp_path / "none.json"))
    missing = CliRunner().invoke(app, ["monitor", "run"], env={"COLUMNS": "240"})
    assert missing.exit_code == 1 and f"no production manifest at {tmp_path / 'none.json'}" in missing.output
