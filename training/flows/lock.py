"""The retrain flow's promotion lock: two runs at once never both gate, promote, build and smoke-test.

A run holds ``<registry>/retrain.lock`` from the gate to the end of the smoke test, so a second run gates against
what the first one left in production. The second run says whom it waits for, and gives up after its timeout saying
why and what to do. ``flock`` is released by the kernel when a process dies, so a crashed run leaves no stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

PROMOTION_LOCK_FILE = "retrain.lock"
POLL_SECONDS = 0.2


class PromotionLockTimeout(RuntimeError):
    """Another run held the promotion lock for longer than this run would wait."""


def lock_holder(handle: IO[str]) -> str:
    """Who holds the lock, as the holder wrote it in the lock file."""
    handle.seek(0)
    return handle.read().strip() or "another process"


@contextlib.contextmanager
def promotion_lock(
    root: Path, holder: str, timeout: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Hold ``<root>/retrain.lock``; yield a record of the wait (seconds, and who held the lock, if anyone).

    A separate file from the registry's own lock, which ``Registry.promote`` takes inside this one (``flock`` on the
    same file twice in one process would deadlock). ``on_wait`` hears once that this run waits, and for whom.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / PROMOTION_LOCK_FILE
    with open(path, "a+") as handle:
        started = time.monotonic()
        waited_for: str | None = None
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                current = lock_holder(handle)
                if waited_for is None and on_wait is not None:
                    on_wait(
                        f"another retrain run is gating, promoting or smoke-testing ({current}): waiting up to "
                        f"{timeout:g} s for the promotion lock {path} before gating against what it leaves"
                    )
                waited_for = current
                if time.monotonic() - started >= timeout:
                    raise PromotionLockTimeout(
                        f"gave up after {timeout:g} s waiting for the promotion lock {path}, held by {current}; "
                        "nothing was gated or promoted (the trained models stay in the store as candidates): "
                        "rerun when that run has finished, or raise MLOPS_RETRAIN_LOCK_TIMEOUT_SECONDS"
                    ) from None
                time.sleep(POLL_SECONDS)
        record = {"waited_seconds": round(time.monotonic() - started, 2), "held_by": waited_for}
        handle.seek(0)
        handle.truncate()
        handle.write(f"{holder}, pid {os.getpid()}, since {datetime.now(UTC).isoformat(timespec='seconds')}")
        handle.flush()
        try:
            yield record
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
