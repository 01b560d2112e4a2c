"""Where a trainer's work runs: in this process, or as named tasks on the run's Dask cluster (``cluster/``).

A trainer splits its work into tasks that are independent and deterministic: the walk-forward folds and the final
fit of a pooled tabular model, each symbol's Prophet evaluation and final fit, the regime model's refits. The same
functions run either way (``cluster.run_tasks``; None runs them here, in order), so a cluster run's evaluations,
predictions and stored models are the in-process run's.

What goes over the wire: the pooled panel is scattered to every worker once per run (``client.scatter(...,
broadcast=True, hash=True)``: a panel already there under its content's key is not sent again) and tasks name it
by its future; a Prophet task carries only its symbol's bars; a regime refit only its observation sequences. Every
worker then holds one copy of the panel (see ``training/dataset.py`` for its memory per row and what one machine
takes).

Threads: a local cluster's workers are single-threaded processes, so a task fits with the worker's thread count
(LightGBM ``num_threads``, the forest's ``n_jobs``) and two tasks never oversubscribe two cores; in this process a
fit uses ``IN_PROCESS_THREADS``. The trees do not depend on it: LightGBM with ``deterministic`` and row-wise
histograms builds the same trees with 1 or 2 threads (the saved model text differs only in its ``[num_threads: N]``
parameter line), and a seeded forest is the same for any ``n_jobs``. BLAS is another matter: Dask starts its
workers with one BLAS thread (``OMP_NUM_THREADS=1``), and a GARCH(1,1) baseline fitted with two OpenBLAS threads
differs from one fitted with one by up to 2e-8 (relative, measured on the embedded data): every task therefore runs
with one BLAS thread wherever it runs (``threadpoolctl``), so both paths compute the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from distributed import Client, Future, get_worker
from threadpoolctl import threadpool_limits

from cluster import run_tasks
from training.dataset import Panel

T = TypeVar("T")

#: Threads of a fit in the client's own process (as before the cluster: two cores here).
IN_PROCESS_THREADS = 2


def fit_threads() -> int:
    """Threads a fit may use where it runs: a Dask worker's own thread count, else ``IN_PROCESS_THREADS``."""
    try:
        return int(get_worker().state.nthreads)
    except ValueError:  # not inside a Dask task
        return IN_PROCESS_THREADS


def one_blas_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` with one BLAS thread, as in a Dask worker (see the module's docstring)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return function(*args)


@dataclass(eq=False)
class Execution:
    """A run's place of work: ``client`` None runs every task here; a client runs them on its cluster."""

    client: Client | None = None
    _shared: dict[int, tuple[Panel, Future]] = field(default_factory=dict, repr=False)

    @property
    def distributed(self) -> bool:
        return self.client is not None

    def shared(self, panel: Panel) -> Panel | Future:
        """The panel as a task argument: itself here; on a cluster, scattered to every worker once (its future)."""
        if self.client is None:
            return panel
        if id(panel) not in self._shared:
            # keyed by content: the flow's model tasks, each scattering the panel it was given, share one copy
            future = self.client.scatter(panel, broadcast=True, hash=True)
            self._shared[id(panel)] = (panel, future)  # the panel is kept so that its id is not reused
        return self._shared[id(panel)][1]

    def run(self, stage: str, function: Callable[..., T], arguments: Mapping[str, tuple[Any, ...]]) -> dict[str, T]:
        """``function(*arguments[name])`` for every name, here or on the cluster; ``TasksFailed`` names failures."""
        return run_tasks(self.client, stage, partial(one_blas_thread, function), arguments)

    def release(self) -> None:
        """Drop the scattered panels from the workers."""
        for _, future in self._shared.values():
            future.release()
        self._shared.clear()


IN_PROCESS = Execution()
