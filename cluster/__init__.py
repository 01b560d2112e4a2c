"""Where per-symbol work runs: a Dask cluster, local by default, an existing one by scheduler address.

Nothing here schedules anything: Dask's distributed scheduler does. This room only chooses the cluster
(``client.py``) and names the tasks it submits so that a failure says which symbols or folds it lost
(``tasks.py``). It imports no other room of the project.
"""

from cluster.client import SCHEDULER_ENV, ClusterSettings, cluster_for, connect, scheduler_address
from cluster.tasks import TasksFailed, run_tasks

__all__ = [
    "SCHEDULER_ENV",
    "ClusterSettings",
    "TasksFailed",
    "cluster_for",
    "connect",
    "run_tasks",
    "scheduler_address",
]
