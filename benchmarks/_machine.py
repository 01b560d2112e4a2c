"""What this machine does with two CPU-bound processes at once: whether they slow each other (a benchmark's
speed-up over two workers cannot beat that)."""

from __future__ import annotations

import resource
import time
from pathlib import Path


def forest_fit(_: int) -> float:
    """Seconds of one single-threaded forest fit on fixed random data (a CPU-bound task like the training's)."""
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(0)
    features = rng.normal(size=(100_000, 40))
    target = features[:, 0] + rng.normal(size=100_000)
    started = time.perf_counter()
    RandomForestRegressor(n_estimators=8, max_depth=8, min_samples_leaf=50, max_features=0.5, random_state=0).fit(
        features, target
    )
    return time.perf_counter() - started


def contention() -> float:
    """A forest fit's time with another running at once in a second process, over its time alone: whether two
    CPU-bound processes on this machine's two cores slow each other."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        alone = pool.map(forest_fit, [0])[0]
    with context.Pool(2) as pool:
        both = pool.map(forest_fit, [0, 1], chunksize=1)
    return sum(both) / 2 / alone


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), MiB. Not ``ru_maxrss``: Linux keeps that across exec, so a process
    spawned (fork and exec, as Dask's nannies start their workers) reports its parent's peak until it passes it;
    VmHWM starts afresh at exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
