"""Submit named tasks to a Dask client and collect each result as soon as it is done.

Results come back to the client as they complete, so a worker that dies later loses only the tasks it was running;
Dask's scheduler reruns those elsewhere (``distributed.scheduler.allowed-failures`` times) and, past that, the task
fails with ``KilledWorker``. Every failure is collected and raised together, naming its task, never swallowed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from distributed import Client, as_completed

T = TypeVar("T")


class TasksFailed(RuntimeError):
    """Some tasks of a run failed; ``failures`` maps each task's name to its error, ``results`` keeps the rest."""

    def __init__(self, stage: str, failures: dict[str, str], results: dict[str, Any]):
        self.stage, self.failures, self.results = stage, failures, results
        listed = "; ".join(f"{name}: {error}" for name, error in sorted(failures.items()))
        super().__init__(f"{len(failures)} of {len(failures) + len(results)} {stage} tasks failed: {listed}")


def run_tasks(
    client: Client | None,
    stage: str,
    function: Callable[..., T],
    arguments: Mapping[str, tuple[Any, ...]],
    *,
    retries: int = 1,
    on_done: Callable[[str], None] | None = None,
) -> dict[str, T]:
    """``function(*arguments[name])`` for every name, on the cluster (or in this process when ``client`` is None).

    Every argument tuple has the same length (they are mapped as columns).

    Returns the results by name, in ``arguments``' order. Raises ``TasksFailed`` naming every task that failed
    (after ``retries`` reruns of a task that raised; a task whose worker died is rerun by the scheduler).
    """
    results: dict[str, T] = {}
    failures: dict[str, str] = {}
    if client is None:
        for name, args in arguments.items():
            try:
                results[name] = function(*args)
            except Exception as error:  # collected and raised below, with the others
                failures[name] = f"{type(error).__name__}: {error}"
            if on_done is not None:
                on_done(name)
    else:
        # One client.map for all tasks, results taken in batches: less per-task overhead than a submit and a wait
        # each (benchmarks/bench_scale.py measures what is left); every argument tuple has the same length.
        run = uuid.uuid4().hex[:8]
        names = list(arguments)
        columns = list(zip(*arguments.values(), strict=True)) if names else []
        keys = [f"{stage}-{name}-{run}" for name in names]
        futures = client.map(function, *columns, key=keys, retries=retries, pure=False) if names else []
        by_key = dict(zip(keys, names, strict=True))
        for batch in as_completed(futures).batches():  # whatever finished since the last look, together
            for future in batch:
                name = by_key[future.key]
                if future.status == "finished":
                    results[name] = future.result()
                else:
                    failed = future.exception()
                    failures[name] = f"{type(failed).__name__}: {failed}"
                future.release()
                if on_done is not None:
                    on_done(name)
    if failures:
        raise TasksFailed(stage, failures, results)
    return {name: results[name] for name in arguments}
