"""Pinning the service's worker process to CPUs (opt in with ``MLOPS_WORKER_CPUS``)."""

from __future__ import annotations

import os


def pin_worker(cpus: str) -> set[int]:
    """Pin every thread of this process to ``cpus`` (``"1"``, ``"0,2"``, ``"2-3"``); return the CPU set.

    A worker runs Python on one core at a time (the GIL), but the event loop's thread parses each request and
    BentoML's worker thread runs the sync methods on it: on different cores, every hand-off moves the request's
    objects between caches. Pinned to one core, ``predict_direction`` answered 15-30 % more requests a second on a
    2-core machine (``benchmarks/bench_service.py``). Opt in with ``MLOPS_WORKER_CPUS`` where the worker has cores
    of its own (e.g. Kubernetes' static CPU manager); unpinned, the OS may move it off a busy core.
    """
    chosen: set[int] = set()
    for part in cpus.split(","):
        first, _, last = part.strip().partition("-")
        chosen.update(range(int(first), int(last or first) + 1))
    allowed = os.sched_getaffinity(0)
    if not chosen or not chosen <= allowed:
        raise ValueError(f"MLOPS_WORKER_CPUS={cpus!r}: this process may run on CPUs {sorted(allowed)} only")
    for thread in os.listdir("/proc/self/task"):  # threads started later inherit it
        os.sched_setaffinity(int(thread), chosen)
    return chosen
