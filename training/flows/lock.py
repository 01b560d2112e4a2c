"""The retrain flow's promotion lock: two runs at once never both gate, promote, build and smoke-test.

A run holds ``<registry>/retrain.lock`` from the gate to the end of the smoke test, so a second run gates against
what the first one left in production. The second run says whom it waits for, and gives up after its timeout saying
why and what to do. The lock is ``filelock``'s (``flock`` on Unix): the kernel releases it when a process dies, so a
crashed run leaves no stale lock. The holder writes who it is into the lock file once it holds it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

PROMOTION_LOCK_FILE = "retrain.lock"
POLL_SECONDS = 0.2


class PromotionLockTimeout(RuntimeError):
    """Another run held the promotion lock for longer than this run would wait."""


def lock_holder(path: Path) -> str:
    """Who holds the lock, as the holder wrote it in the lock file."""
    try:
        return path.read_text().strip() or "another process"
    except OSError:
        return "another process"


def write_holder(holder: str) -> Callable[[int], None]:
    """filelock's ``on_acquired`` hook: write ``<holder> since <time>`` into the lock file it has just locked."""

    def write(descriptor: int) -> None:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{holder} since {datetime.now(UTC).isoformat(timespec='seconds')}".encode(), 0)

    return write


@contextlib.contextmanager
def promotion_lock(
    root: Path, holder: str, timeout: float, on_wait: Callable[[str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Hold ``<root>/retrain.lock``; yield a record of the wait (seconds, and who held the lock, if anyone).

    A separate file from the registry's own lock, which ``Registry.promote`` takes inside this one. ``on_wait``
    hears once that this run waits, and for whom.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / PROMOTION_LOCK_FILE
    lock = FileLock(path, on_acquired=write_holder(f"{holder}, pid {os.getpid()},"))
    started = time.monotonic()
    waited_for: str | None = None
    try:
        lock.acquire(blocking=False)
    except Timeout:
        waited_for = lock_holder(path)
        if on_wait is not None:
            on_wait(
                f"another retrain run is gating, promoting or smoke-testing ({waited_for}): waiting up to "
                f"{timeout:g} s for the promotion lock {path} before gating against what it leaves"
            )
        try:
            lock.acquire(timeout=max(timeout - (time.monotonic() - started), 0.0), poll_interval=POLL_SECONDS)
        except Timeout:
            raise PromotionLockTimeout(
                f"gave up after {timeout:g} s waiting for the promotion lock {path}, held by {lock_holder(path)}; "
                "nothing was gated or promoted (the trained models stay in the store as candidates): "
                "rerun when that run has finished, or raise MLOPS_RETRAIN_LOCK_TIMEOUT_SECONDS"
            ) from None
    try:
        yield {"waited_seconds": round(time.monotonic() - started, 2), "held_by": waited_for}
    finally:
        with contextlib.suppress(OSError):
            os.truncate(path, 0)  # still held: nobody else reads a stale holder
        lock.release()
