"""The cluster room on a real ``distributed.LocalCluster`` of worker processes: named results, named failures, and
a worker killed mid-run (its task rerun elsewhere, or failed by name; results already collected kept)."""

from __future__ import annotations

import os
from pathlib import Path

import dask
import pytest

from cluster import SCHEDULER_ENV, ClusterSettings, TasksFailed, connect, run_tasks, scheduler_address


def square(x: int) -> int:
    return x * x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is refused")
    return x


def dies_once(marker: str, x: int) -> int:
    """Kills its worker process the first time it runs (the marker file records that it did)."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(1)
    return x + 100


def always_dies(x: int) -> int:
    os._exit(1)


def worker_pid(_: int) -> int:
    return os.getpid()


def worker_environ() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}


@pytest.fixture(scope="module")
def client():  # type: ignore[no-untyped-def]
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), connect(ClusterSettings(workers=2)) as c:
        yield c


def test_scheduler_address_from_argument_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    assert scheduler_address(None) is None
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://10.0.0.5:8786")
    assert scheduler_address(None) == "tcp://10.0.0.5:8786"
    assert scheduler_address("tcp://other:8786") == "tcp://other:8786"
    with pytest.raises(ValueError, match="tcp://HOST:8786"):
        scheduler_address("other:8786")


def test_local_cluster_runs_worker_processes(client) -> None:  # type: ignore[no-untyped-def]
    workers = client.scheduler_info()["workers"]
    assert len(workers) == 2
    assert all(w["nthreads"] == 1 for w in workers.values())
    pids = set(run_tasks(client, "pid", worker_pid, {str(i): (i,) for i in range(8)}).values())
    assert os.getpid() not in pids
    # Dask's one BLAS/OpenMP thread a worker kept, its malloc trimming dropped (cluster/worker_environ.py)
    assert list(client.run(worker_environ).values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}] * 2


@pytest.mark.parametrize("in_process", [True, False])
def test_results_by_name_in_order(client, in_process: bool) -> None:  # type: ignore[no-untyped-def]
    names = {f"s{i}": (i,) for i in (5, 1, 4, 2)}
    results = run_tasks(None if in_process else client, "square", square, names)
    assert list(results) == ["s5", "s1", "s4", "s2"]
    assert results == {"s5": 25, "s1": 1, "s4": 16, "s2": 4}


@pytest.mark.parametrize("in_process", [True, False])
def test_failures_named_and_other_results_kept(client, in_process: bool) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TasksFailed) as raised:
        run_tasks(None if in_process else client, "check", fails_on_three, {f"s{i}": (i,) for i in range(5)}, retries=0)
    assert raised.value.failures == {"s3": "ValueError: three is refused"}
    assert raised.value.results == {"s0": 0, "s1": 1, "s2": 2, "s4": 4}
    assert "1 of 5 check tasks failed: s3: ValueError: three is refused" in str(raised.value)


def test_killed_worker_task_rerun_elsewhere(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "died"
    results = run_tasks(client, "dies-once", dies_once, {"a": (str(marker), 1)})
    assert marker.exists()
    assert results == {"a": 101}
    client.wait_for_workers(2, timeout=60)


def test_task_that_keeps_killing_workers_fails_by_name(client) -> None:  # type: ignore[no-untyped-def]
    arguments = {"good": (2,), "deadly": (0,)}
    function = {"good": square, "deadly": always_dies}

    def dispatch(name: str, x: int) -> int:
        return function[name](x)

    with pytest.raises(TasksFailed) as raised:
        run_tasks(client, "kill", dispatch, {name: (name, *args) for name, args in arguments.items()})
    assert set(raised.value.failures) == {"deadly"}
    assert "KilledWorker" in raised.value.failures["deadly"]
    assert raised.value.results == {"good": 4}
    client.wait_for_workers(2, timeout=60)
