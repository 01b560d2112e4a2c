"""Training on a Dask cluster (a real ``LocalCluster`` of two worker processes) gives the in-process run's panel,
evaluations, predictions and stored models, bit for bit; and a run on few symbols starts no cluster."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from distributed import Client

from bentos.prophet_model import ProphetModels
from bentos.regime_model import RegimeModel
from cluster import ClusterSettings
from data.snapshots import SnapshotInfo, SnapshotStore
from tests.integration_helpers import free_port
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.run import LOCAL_CLUSTER_MIN_SYMBOLS, ModelResult, TrainingRun, train, training_client

PANEL_ARRAYS = ("dates", "symbols", "features", "close", "positions", "forward_return", "direction")


def assert_same_panel(a: Panel, b: Panel) -> None:
    for name in (*PANEL_ARRAYS, "forward_volatility"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name, strict=True)
    assert a.target_end.keys() == b.target_end.keys()
    for h in a.target_end:
        np.testing.assert_array_equal(a.target_end[h], b.target_end[h], strict=True)
    assert a.bars.keys() == b.bars.keys()
    for symbol in a.bars:
        pd.testing.assert_frame_equal(a.bars[symbol], b.bars[symbol], check_exact=True)


def test_the_panel_built_on_the_cluster_is_the_in_process_panel(
    small_universe: tuple[SnapshotStore, SnapshotInfo], dask_client: Client
) -> None:
    store, info = small_universe
    bars = store.load(info.id)
    here = build_panel(bars, info, 5, "2010-01-01")
    there = build_panel(bars, info, 5, "2010-01-01", client=dask_client)
    assert_same_panel(here, there)
    # from the store: each task reads its own symbol's file, on the cluster and here
    assert_same_panel(here, build_panel(store, info, 5, "2010-01-01", client=dask_client))
    assert_same_panel(here, build_panel(store, info, 5, "2010-01-01"))
    assert sorted(there.bars) == ["NDX_P", "SPX_P", "^GSPC", "^IXIC"]
    assert len(there) == sum(int((f["date"] >= "2010-01-01").sum()) for f in there.bars.values())


@pytest.fixture(scope="module")
def cluster_run(
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo],
    tmp_path_factory: pytest.TempPathFactory,
    dask_client: Client,
) -> TrainingRun:
    """The session's quick run (``quick_run``, in process) again, on the two-worker cluster."""
    store, info = embedded_snapshot
    root = tmp_path_factory.mktemp("cluster-reports")
    return train(info.id, config=TrainingConfig.quick(), store=store, reports_root=root, client=dask_client)


def by_name(run: TrainingRun) -> dict[str, ModelResult]:
    assert run.ok, run.failures
    return {r.name: r for r in run.results}


def without_timing(value: Any) -> Any:
    """A card section with the seconds things took (which differ between runs) left out."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if "seconds" not in k and k != "timing"}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def test_every_evaluation_on_the_cluster_is_the_in_process_one(
    quick_run: TrainingRun, cluster_run: TrainingRun
) -> None:
    here, there = by_name(quick_run), by_name(cluster_run)
    assert list(there) == list(here)  # the six models, in the order asked
    for name, result in here.items():
        ours, theirs = result.evaluation, there[name].evaluation
        pd.testing.assert_frame_equal(ours.predictions, theirs.predictions, check_exact=True, obj=name)
        assert without_timing(ours.to_dict()) == without_timing(theirs.to_dict()), name
        assert ours.metrics == theirs.metrics


def test_every_stored_model_from_the_cluster_is_the_in_process_one(
    quick_run: TrainingRun, cluster_run: TrainingRun
) -> None:
    here, there = by_name(quick_run), by_name(cluster_run)
    assert {r.tag for r in here.values()}.isdisjoint(r.tag for r in there.values())  # new versions, saved
    for name in ("return_lightgbm", "direction_lightgbm", "volatility_lightgbm"):
        ours, theirs = (bentoml.lightgbm.load_model(r[name].tag) for r in (here, there))
        assert isinstance(ours, lgb.Booster) and isinstance(theirs, lgb.Booster)
        # the same trees; only the recorded num_threads may differ (1 per worker, 2 in process)
        assert ours.dump_model()["tree_info"] == theirs.dump_model()["tree_info"], name
    forests = [bentoml.sklearn.load_model(r["return_random_forest"].tag) for r in (here, there)]
    rows = np.random.default_rng(0).normal(size=(500, forests[0].n_features_in_))
    np.testing.assert_array_equal(forests[0].predict(rows), forests[1].predict(rows))
    prophets = [ProphetModels.load(bentoml.models.get(r["price_prophet"].tag).path) for r in (here, there)]
    assert prophets[0].symbols == prophets[1].symbols
    for symbol in prophets[0].symbols:
        a, b = (p.model(symbol).params for p in prophets)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{symbol} {key}")
        assert prophets[0].entries[symbol] == prophets[1].entries[symbol]
    regimes = [RegimeModel.load(bentoml.models.get(r["regime_hmm"].tag).path) for r in (here, there)]
    assert regimes[0] == regimes[1]


def test_cards_match_but_for_the_seconds(quick_run: TrainingRun, cluster_run: TrainingRun) -> None:
    here, there = by_name(quick_run), by_name(cluster_run)
    for name, result in here.items():
        ours = without_timing(json.loads(json.dumps(result.card.to_metadata(), default=str)))
        theirs = without_timing(json.loads(json.dumps(there[name].card.to_metadata(), default=str)))
        for key in set(ours) | set(theirs):
            if key in {"git_commit", "created_at"}:
                continue
            assert ours.get(key) == theirs.get(key), f"{name} card field {key}"


def test_few_symbols_run_here_and_a_scheduler_address_always_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_DASK_SCHEDULER", raising=False)
    with training_client(ClusterSettings(), symbols=2) as client:
        assert client is None
    with training_client(ClusterSettings(workers=1), symbols=LOCAL_CLUSTER_MIN_SYMBOLS) as client:
        assert client is not None
        assert len(client.scheduler_info()["workers"]) == 1
    with training_client(ClusterSettings(workers=1), symbols=2, min_symbols=1) as client:
        assert client is not None


def test_past_the_row_limit_a_pooled_fit_trains_on_a_seeded_sample(quick_panel: Panel, dask_client: Client) -> None:
    from training.models.execution import Execution
    from training.models.return_lightgbm import ReturnLightGBM

    config = TrainingConfig.quick(max_training_rows=1_000)
    here = ReturnLightGBM(config).evaluate_and_fit(quick_panel)
    there = ReturnLightGBM(config, execution=Execution(dask_client)).evaluate_and_fit(quick_panel)
    evaluation, fitted = here[0], here[1]
    assert [fold["n_train_sampled"] for fold in evaluation.folds] == [1_000] * len(evaluation.folds)
    assert all(fold["n_train"] > 1_000 for fold in evaluation.folds)
    known = int(np.isfinite(quick_panel.forward_return).sum())
    assert fitted.extra["training_rows"] == {"used": 1_000, "sampled_from": known, "sample": "uniform"}
    assert fitted.model.dump_model()["tree_info"] == there[1].model.dump_model()["tree_info"]
    pd.testing.assert_frame_equal(evaluation.predictions, there[0].predictions, check_exact=True)
    unlimited = ReturnLightGBM(TrainingConfig.quick(max_training_rows=None)).fit(quick_panel)
    assert "training_rows" not in unlimited.extra
    assert unlimited.model.dump_model()["tree_info"] != fitted.model.dump_model()["tree_info"]


def test_past_the_tree_rows_cap_each_tree_grows_on_that_many_rows_and_below_it_nothing_changes(
    quick_panel: Panel,
) -> None:
    from training.models.return_random_forest import ReturnRandomForest

    def trees(config: TrainingConfig) -> tuple[Any, list[np.ndarray]]:
        fitted = ReturnRandomForest(config).fit(quick_panel)
        return fitted, [t.tree_.value.ravel() for t in fitted.model.estimators_]

    rows = int(np.isfinite(quick_panel.forward_return).sum())
    default, default_trees = trees(TrainingConfig.quick(rf_tree_rows=None))  # scikit-learn's default bootstrap
    at_rows, at_rows_trees = trees(TrainingConfig.quick(rf_tree_rows=rows))
    assert at_rows.model.max_samples is None and "tree_rows" not in at_rows.extra
    assert all(np.array_equal(a, b) for a, b in zip(default_trees, at_rows_trees, strict=True))
    capped, capped_trees = trees(TrainingConfig.quick(rf_tree_rows=500))
    assert capped.model.max_samples == 500
    assert capped.extra["tree_rows"] == {"bootstrap_rows": 500, "cap": "TrainingConfig.rf_tree_rows"}
    # a tree's root holds its bootstrap sample: 500 rows drawn, against every row without the cap
    assert {int(t.tree_.n_node_samples[0]) for t in capped.model.estimators_} <= set(range(1, 501))
    assert {int(t.tree_.weighted_n_node_samples[0]) for t in capped.model.estimators_} == {500}
    assert {int(t.tree_.weighted_n_node_samples[0]) for t in default.model.estimators_} == {rows}
    assert not all(np.array_equal(a, b) for a, b in zip(default_trees, capped_trees, strict=True))


#: what deploy/k8s/dask/workers.yaml gives its workers (cluster/worker_environ.py)
WORKER_PRELOAD = ("--preload-nanny", "cluster.worker_environ")


@pytest.fixture
def command_line_cluster(tmp_path: Path) -> Iterator[str]:
    """``dask scheduler`` and two ``dask worker`` processes started from the command line, as on real machines."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    logs = [open(tmp_path / f"{name}.log", "wb") for name in ("scheduler", "worker-1", "worker-2")]  # noqa: SIM115
    commands = [
        [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        *[[dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard", *WORKER_PRELOAD]] * 2,
    ]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for command, log in zip(commands, logs, strict=True):
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path))
            if command[1] == "scheduler":
                time.sleep(1.0)
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            # the preload gave the worker processes the project's environment (cluster/worker_environ.py)
            environ = client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")})
            assert list(environ.values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}] * 2
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs:
            log.close()


@pytest.mark.integration
def test_mlops_train_and_batch_on_a_command_line_cluster_give_the_in_process_results(
    command_line_cluster: str, quick_run: TrainingRun, production_models: dict[str, str], tmp_path: Path
) -> None:
    """``mlops train --scheduler`` and ``mlops batch universe --scheduler`` against a scheduler and two workers
    started with the ``dask`` command: the stored models' cards and trees are those of the session's in-process
    run, and the scores those of an in-process universe batch."""
    from typer.testing import CliRunner

    from cli.main import app
    from data.pull import pull
    from data.settings import DataSettings
    from data.sources import EmbeddedSource

    pull(EmbeddedSource(), SnapshotStore(DataSettings().snapshots))
    names = ["return_lightgbm", "price_prophet"]
    before = {str(m.tag) for m in bentoml.models.list()}
    arguments = ["train", "--quick", "--scheduler", command_line_cluster, *[a for n in names for a in ("-m", n)]]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert f"on the Dask cluster at {command_line_cluster}" in " ".join(result.output.split())
    new = {str(m.tag): m for m in bentoml.models.list() if str(m.tag) not in before}
    assert sorted(tag.split(":")[0] for tag in new) == sorted(names)
    expected = by_name(quick_run)
    for tag, model in new.items():
        name = tag.split(":")[0]
        assert model.info.metadata["metrics"] == expected[name].card.to_metadata()["metrics"], name
    ours = bentoml.lightgbm.load_model(next(t for t in new if t.startswith("return_lightgbm")))
    theirs = bentoml.lightgbm.load_model(expected["return_lightgbm"].tag)
    assert ours.dump_model()["tree_info"] == theirs.dump_model()["tree_info"]

    from scoring.universe import read_scores, score_universe

    result = CliRunner().invoke(
        app,
        ["batch", "universe", str(tmp_path / "scores"), "--scheduler", command_line_cluster, "--start", "2017-01-03"],
    )
    assert result.exit_code == 0, result.output
    assert f"on {command_line_cluster}" in " ".join(result.output.split())
    store = SnapshotStore(DataSettings().snapshots)
    local = score_universe(tmp_path / "local", production_models, store=store, start=dt.date(2017, 1, 3))
    assert local.rows_scored > 0
    assert read_scores(tmp_path / "scores").equals(read_scores(tmp_path / "local"), check_metadata=True)
