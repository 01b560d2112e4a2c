"""The Dask client of a run: an existing cluster named by address, or a local cluster of worker processes.

The address comes from the caller (``--scheduler tcp://HOST:8786``) or from ``MLOPS_DASK_SCHEDULER``; without one,
a ``distributed.LocalCluster`` starts with one single-threaded worker process per core (the models' own libraries
release the GIL only in parts, and LightGBM, Prophet's Stan and hmmlearn each use one core a task best when tasks
run side by side), and stops with the run. Workers of an existing cluster must see the same snapshot store and
model store paths as the client (a shared volume; ``deploy/k8s/dask.yaml``), and start with the nanny preload
``cluster.worker_environ`` (the environment of their processes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from distributed import Client, LocalCluster

#: The environment variable naming an existing cluster's scheduler (``tcp://HOST:8786``).
SCHEDULER_ENV = "MLOPS_DASK_SCHEDULER"


def scheduler_address(explicit: str | None = None) -> str | None:
    """The scheduler to use: the explicit address, else ``MLOPS_DASK_SCHEDULER``, else None (a local cluster)."""
    address = explicit or os.environ.get(SCHEDULER_ENV) or None
    if address is not None and "://" not in address:
        raise ValueError(f"a Dask scheduler address looks like tcp://HOST:8786, not {address!r}")
    return address


@dataclass(frozen=True)
class ClusterSettings:
    """Which cluster a run uses. ``workers`` and ``memory_limit`` size a local cluster only."""

    scheduler: str | None = None
    workers: int | None = None
    memory_limit: str = "auto"
    connect_timeout_seconds: float = 30.0

    @property
    def address(self) -> str | None:
        return scheduler_address(self.scheduler)

    @property
    def local_workers(self) -> int:
        return self.workers or os.cpu_count() or 1


@contextmanager
def cluster_for(settings: ClusterSettings, units: int, min_units: int) -> Iterator[Client | None]:
    """The client of a run over ``units`` symbols: the named cluster; else a local cluster from ``min_units`` on;
    else None (in this process, no cluster started, because starting one costs more than it saves)."""
    if settings.address is None and units < min_units:
        yield None
        return
    with connect(settings) as client:
        yield client


@contextmanager
def connect(settings: ClusterSettings | None = None) -> Iterator[Client]:
    """A client of the named cluster, or of a local cluster that lives as long as the ``with`` block."""
    settings = settings or ClusterSettings()
    address = settings.address
    if address is not None:
        client = Client(address, timeout=f"{settings.connect_timeout_seconds}s")
        try:
            yield client
        finally:
            client.close()
        return
    # the workers' environment without Dask's malloc trimming (cluster/worker_environ.py says why)
    cluster = LocalCluster(
        preload_nanny=["cluster.worker_environ"],
        n_workers=settings.local_workers,
        threads_per_worker=1,
        processes=True,
        memory_limit=settings.memory_limit,
        dashboard_address=None,
        worker_dashboard_address=None,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()
