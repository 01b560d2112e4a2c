"""Batch scoring of a universe (``scoring/universe.py``): on a real Dask cluster, the rows of the single-process
file batch bit for bit, models loaded once per worker, the output partitioned by symbol and replaced atomically."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from distributed import Client
from typer.testing import CliRunner

from bentos.batch import score_file
from cluster import TasksFailed
from data.snapshots import SnapshotInfo, SnapshotStore
from scoring.universe import (
    SCORES_MANIFEST,
    UniverseOutputError,
    models_loaded,
    plan,
    read_scores,
    score_universe,
)
from tests.conftest import as_panel, make_bars

ROWS_PER_TASK = 4_000  # the six symbols in four tasks: two of one symbol, two of two


@pytest.fixture(scope="module")
def universe(
    small_universe: tuple[SnapshotStore, SnapshotInfo], tmp_path_factory: pytest.TempPathFactory
) -> tuple[SnapshotStore, SnapshotInfo]:
    """The small universe plus a symbol too short to score and one whose name needs encoding in a path."""
    store, info = small_universe
    extra = as_panel(("SHORT", make_bars(100, seed=4)), ("BRK/B", make_bars(600, seed=5)))
    bars = pd.concat([store.load(info.id), extra], ignore_index=True)
    wider = SnapshotStore(tmp_path_factory.mktemp("universe-batch-snapshots"))
    wide_info, _ = wider.write(bars, source="test-universe")
    return wider, wide_info


@pytest.fixture(scope="module")
def reference(
    universe: tuple[SnapshotStore, SnapshotInfo],
    production_models: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> pa.Table:
    """What the single-process file batch gives for the same bars."""
    store, info = universe
    work = tmp_path_factory.mktemp("universe-reference")
    store.load(info.id).to_parquet(work / "bars.parquet", index=False)
    score_file(work / "bars.parquet", work / "scored.parquet", manifest=production_models)
    return pq.read_table(work / "scored.parquet")


def test_tasks_group_whole_symbols_in_the_snapshot_order(universe: tuple[SnapshotStore, SnapshotInfo]) -> None:
    _, info = universe
    groups = plan(info, info.symbols, ROWS_PER_TASK)
    assert [s for group in groups for s in group] == info.symbols
    assert [len(group) for group in groups] == [2, 2, 1, 1]
    assert plan(info, ["^IXIC", "SHORT"], 10**9) == [("SHORT", "^IXIC")]
    assert plan(info, info.symbols, 1) == [(s,) for s in info.symbols]


def test_in_process_the_rows_are_the_file_batch_rows(
    universe: tuple[SnapshotStore, SnapshotInfo], production_models: dict[str, str], reference: pa.Table, tmp_path: Path
) -> None:
    store, info = universe
    summary = score_universe(tmp_path / "out", production_models, store=store, rows_per_task=ROWS_PER_TASK)
    assert read_scores(tmp_path / "out").equals(reference, check_metadata=True)
    assert summary.rows_scored == reference.num_rows and summary.rows_read == info.rows
    manifest = json.loads((tmp_path / "out" / SCORES_MANIFEST).read_text())
    assert manifest["unscored"] == ["SHORT"]
    assert manifest["snapshot"] == info.id and manifest["models"] == production_models
    assert manifest["symbols"]["BRK/B"]["path"] == "symbol=BRK%2FB/part-0.parquet"
    one = pq.read_table(tmp_path / "out" / "symbol=%5EGSPC" / "part-0.parquet")
    assert "symbol" not in one.column_names and one.num_rows == manifest["symbols"]["^GSPC"]["rows"]


def test_on_a_cluster_the_rows_are_the_file_batch_rows_and_each_worker_loads_the_models_once(
    universe: tuple[SnapshotStore, SnapshotInfo],
    production_models: dict[str, str],
    reference: pa.Table,
    dask_client: Client,
    tmp_path: Path,
) -> None:
    store, _ = universe
    summary = score_universe(
        tmp_path / "out", production_models, store=store, client=dask_client, rows_per_task=ROWS_PER_TASK
    )
    assert read_scores(tmp_path / "out").equals(reference, check_metadata=True)
    assert summary.tasks > len(dask_client.scheduler_info()["workers"])
    again = score_universe(tmp_path / "out", production_models, store=store, client=dask_client, rows_per_task=1)
    assert read_scores(tmp_path / "out").equals(reference, check_metadata=True)
    loads = dask_client.run(models_loaded)
    assert sum(loads.values()) >= 1 and all(n <= 1 for n in loads.values()), loads
    assert again.tasks > summary.tasks


def test_from_a_start_date_the_rows_are_the_file_batch_rows_of_those_dates(
    universe: tuple[SnapshotStore, SnapshotInfo], production_models: dict[str, str], reference: pa.Table, tmp_path: Path
) -> None:
    """Only the context the file batch carries is scored before the start, and the rows are still the same."""
    store, _ = universe
    start = dt.date(2016, 3, 1)
    summary = score_universe(tmp_path / "out", production_models, store=store, start=start)
    expected = reference.filter(pc.greater_equal(reference["date"], pa.scalar(start, pa.date32())))
    assert read_scores(tmp_path / "out").equals(expected, check_metadata=True)
    assert summary.rows_read == 5_560  # 5 symbols' bars from the start and their context, not whole histories


def test_a_subset_of_symbols(
    universe: tuple[SnapshotStore, SnapshotInfo], production_models: dict[str, str], reference: pa.Table, tmp_path: Path
) -> None:
    store, _ = universe
    score_universe(tmp_path / "out", production_models, store=store, symbols=["^IXIC", "BRK/B"])
    wanted = pc.is_in(reference["symbol"], pa.array(["BRK/B", "^IXIC"]))
    assert read_scores(tmp_path / "out").equals(reference.filter(wanted), check_metadata=True)
    with pytest.raises(UniverseOutputError, match="no symbol 'NOPE'"):
        score_universe(tmp_path / "other", production_models, store=store, symbols=["NOPE"])


def test_a_failed_run_leaves_the_previous_output_and_names_its_tasks(
    universe: tuple[SnapshotStore, SnapshotInfo], production_models: dict[str, str], tmp_path: Path
) -> None:
    store, _ = universe
    score_universe(tmp_path / "out", production_models, store=store, symbols=["^IXIC"])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    broken = production_models | {"volatility_lightgbm": "volatility_lightgbm:doesnotexist"}
    with pytest.raises(TasksFailed, match=r"score tasks failed: .*volatility_lightgbm:doesnotexist"):
        score_universe(tmp_path / "out", broken, store=store)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no staging left either
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(UniverseOutputError, match="is not the output of a universe batch"):
        score_universe(tmp_path / "notes", production_models, store=store)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_the_command_scores_a_snapshot_and_says_where(
    universe: tuple[SnapshotStore, SnapshotInfo], production_models: dict[str, str], reference: pa.Table, tmp_path: Path
) -> None:
    from cli.main import app
    from data.settings import DataSettings

    store, info = universe
    SnapshotStore(DataSettings().snapshots).write(store.load(info.id), source="test-universe")
    result = CliRunner().invoke(app, ["batch", "universe", str(tmp_path / "out"), "--start", "2018-01-02"])
    assert result.exit_code == 0, result.output
    assert "in this process" in result.output  # 6 symbols: fewer than the local cluster's threshold
    expected = reference.filter(pc.greater_equal(reference["date"], pa.scalar(dt.date(2018, 1, 2), pa.date32())))
    assert read_scores(tmp_path / "out").equals(expected, check_metadata=True)
    bad = CliRunner().invoke(app, ["batch", "universe", str(tmp_path / "x"), "--start", "2018-1-2"])
    assert bad.exit_code == 2 and "is not a date" in bad.output
