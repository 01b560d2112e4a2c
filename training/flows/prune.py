"""The retrain flow's last step: keep the model store in bounds (``training/registry/prune.py``).

Off unless asked (``prune_keep`` of the flow, or ``MLOPS_RETRAIN_PRUNE_KEEP``): a run keeps the newest N versions
of each model and Bentos, production, its N most recent rollback targets and whatever a kept Bento ships. It runs
after the promotion lock is released and only when every earlier step succeeded; a prune that fails is a failure of
the run, but the promotions and the Bento stand, and the next prune finishes what it left.
"""

from __future__ import annotations

from training.flows.summary import RunRecord
from training.registry.promotion import Registry
from training.registry.prune import prune


def prune_store(record: RunRecord, registry: Registry, keep: int | None) -> None:
    """Prune with ``keep`` (None: skip) and record what was removed and freed."""
    if keep is None or record.failures:
        return
    with record.step("prune"):
        try:
            done = prune(keep, registry)
        except Exception as error:  # the promotions and the Bento stand; the next prune finishes the job
            record.failures.append(f"pruning the model store failed: {type(error).__name__}: {error}")
            return
    record.prune = {
        "keep": keep,
        "removed": [f"{r.kind} {r.tag}" for r in done.remove],
        "freed_bytes": done.bytes,
        "rollback_targets_dropped": done.rollback_trim,
    }
