"""``mlops models prune`` on a real store of six nights of retrains (tests/prune_scenario.py, in a subprocess with its
own BENTOML_HOME): what goes, what stays and why, rollbacks that still work, and a prune killed midway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from features.catalog import MODEL_NAMES
from training.run import TrainingRun

ROOT = Path(__file__).resolve().parents[1]
NIGHTS = 6


def scenario(home: Path, *args: str, timeout: float = 300) -> Any:
    env = {**os.environ, "BENTOML_HOME": str(home / "bentoml"), "MLOPS_HOME": str(home / "mlops")}
    env.pop("MLOPS_PRODUCTION_FILE", None)
    result = subprocess.run(
        [sys.executable, "-m", "tests.prune_scenario", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def store(tmp_path: Path, quick_run: TrainingRun) -> tuple[Path, dict[str, Any]]:
    cards = tmp_path / "cards.json"
    cards.write_text(json.dumps({r.name: r.card.to_metadata() for r in quick_run.results}))
    made = scenario(tmp_path, "populate", str(cards), str(NIGHTS))
    return tmp_path, made


def expected_after_keep_2(made: dict[str, Any]) -> tuple[set[str], set[str]]:
    """Nights 6 and 5 (newest two), 4 (a rollback target and shipped by the kept night-4 Bento) stay."""
    nights = made["models"]
    kept = {tag for night in (nights[5], nights[4], nights[3]) for tag in night}
    removed = {tag for night in nights[:3] for tag in night}
    return kept, removed


@pytest.mark.timeout(900)
def test_prune_keeps_what_is_needed_and_says_what_it_freed(store: tuple[Path, dict[str, Any]]) -> None:
    home, made = store
    assert len(made["bentos"]) == 3
    done = scenario(home, "prune", "2")
    kept, removed = expected_after_keep_2(made)
    assert set(done["removed"]) == removed | {made["bentos"][0]}
    assert done["bytes"] > len(removed) * 100_000
    assert set(done["trim"]) == set(MODEL_NAMES)
    after = scenario(home, "state")
    assert set(after["models"]) == kept
    assert set(after["bentos"]) == set(made["bentos"][1:])
    for shipped in after["bentos"].values():
        assert set(shipped) <= kept  # every kept Bento's models are still there
    for name, entry in after["registry"].items():
        assert entry["tag"] in kept and set(entry["previous"]) <= kept and len(entry["previous"]) == 2, name
    again = scenario(home, "prune", "2")
    assert again["removed"] == [] and again["bytes"] == 0  # nothing more to do


@pytest.mark.timeout(900)
def test_a_prune_killed_midway_leaves_a_whole_store_and_a_rerun_finishes(store: tuple[Path, dict[str, Any]]) -> None:
    home, made = store
    env = {**os.environ, "BENTOML_HOME": str(home / "bentoml"), "MLOPS_HOME": str(home / "mlops")}
    env.pop("MLOPS_PRODUCTION_FILE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.prune_scenario", "prune", "2", "pause"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "removed one"
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    middle = scenario(home, "state")  # every listed model and Bento reads whole
    kept, removed = expected_after_keep_2(made)
    assert made["bentos"][0] not in middle["bentos"]  # Bentos go first: the oldest is gone, its models not yet
    assert kept | removed == set(middle["models"])
    scenario(home, "prune", "2")
    after = scenario(home, "state")
    assert set(after["models"]) == kept
    assert not any((home / "bentoml" / ".mlops-trash").iterdir())


def test_cli_dry_run_removes_nothing_and_refuses_keep_0() -> None:
    from typer.testing import CliRunner

    from cli.main import app

    before = scenario_free_listing()
    result = CliRunner().invoke(app, ["models", "prune", "--keep", "1000", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would free 0.0 MB: 0 removed" in result.output
    assert scenario_free_listing() == before
    refused = CliRunner().invoke(app, ["models", "prune", "--keep", "0"])
    assert refused.exit_code != 0


def scenario_free_listing() -> list[str]:
    import bentoml

    return sorted(str(m.tag) for m in bentoml.models.list())


def test_the_flow_step_records_what_it_did_and_skips_a_failed_run(tmp_path: Path) -> None:
    from training.flows.prune import prune_store
    from training.flows.summary import RunRecord
    from training.registry.promotion import Registry

    registry = Registry(tmp_path / "registry")
    record = RunRecord(flow_run="test", mode="quick", rules="default")
    prune_store(record, registry, None)
    assert record.prune is None and "prune" not in record.seconds
    prune_store(record, registry, 1000)  # the session store: nothing is beyond the newest 1000
    assert record.prune == {"keep": 1000, "removed": [], "freed_bytes": 0, "rollback_targets_dropped": {}}
    assert "prune" in record.seconds and not record.failures
    failed = RunRecord(flow_run="test", mode="quick", rules="default", failures=["the gate failed"])
    prune_store(failed, registry, 1)
    assert failed.prune is None
