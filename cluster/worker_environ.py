"""The environment a Dask nanny gives its worker process: Dask's own, less its memory-trimming setting.

Dask's nannies start each worker process with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-
environ``), so that glibc hands freed memory back to the system sooner. Setting it also fixes glibc's mmap threshold
at 128 KiB: every feature column and prediction array of a batch is then mapped, zeroed by the kernel and unmapped
anew. Measured on 200 synthetic symbols x 15 years (705,800 rows, the batch's five models, one thread): the file batch
scores 97,825 rows/s in a plain process and 69,212 with that variable set; a local cluster's worker, warm, 70,821
with it and 91,886 without, at a peak resident set 7 % higher (451 against 484 MB). The workers' memory is bounded
by their tasks, which do not grow with the universe (``benchmarks/bench_scale.py`` measures both), so the variable
is removed: glibc's own thresholds apply.

Applied to the local cluster (``cluster/client.py``) and, as a nanny preload, to the workers of a cluster started
from the command line: ``dask worker ADDRESS --preload-nanny cluster.worker_environ`` (the Kubernetes workers do;
``deploy/k8s/dask/workers.yaml``). Importing this module changes the process's Dask configuration, which is what a
preload is for: the nanny imports it before it reads the setting.
"""

from __future__ import annotations

import dask

#: Variables of ``distributed.nanny.pre-spawn-environ`` changed (None: not set at all).
WORKER_ENVIRON: dict[str, str | None] = {"MALLOC_TRIM_THRESHOLD_": None}
PRE_SPAWN = "distributed.nanny.pre-spawn-environ"


def worker_environ() -> dict[str, str | None]:
    """The Dask configuration that gives the workers :data:`WORKER_ENVIRON` (for ``dask.config.set``)."""
    return {f"{PRE_SPAWN}.{name}": value for name, value in WORKER_ENVIRON.items()}


dask.config.set(worker_environ())
