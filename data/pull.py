"""Pull bars from a source, validate them against the OHLCV contract and store them as a snapshot."""

from __future__ import annotations

from collections.abc import Callable

from data.snapshots import SnapshotInfo, SnapshotStore
from data.sources import Source, SourceError


class PullError(RuntimeError):
    """A pull failed; the message says why and which cached snapshots could be used instead."""


def pull(
    source: Source, store: SnapshotStore, on_symbol: Callable[[str], None] | None = None
) -> tuple[SnapshotInfo, bool]:
    """Fetch, validate and store; return the snapshot and whether it is new.

    Nothing falls back silently: a failed fetch, or a snapshot that cannot be written (a full disk), raises
    :class:`PullError` naming the cached snapshots. A snapshot is written whole or not at all.
    """
    try:
        bars = source.fetch(on_symbol=on_symbol)
    except SourceError as error:
        raise PullError(f"{source.name} pull failed: {error}\n{_cached_hint(store)}") from error
    try:
        return store.write(bars, source=source.name, origin=source.describe())
    except OSError as error:
        raise PullError(
            f"{source.name} pull fetched its bars but could not store them in {store.root}: "
            f"{error.strerror or error}. Nothing was written; free space there or set MLOPS_SNAPSHOT_DIR, "
            f"then pull again.\n{_cached_hint(store)}"
        ) from error


def _cached_hint(store: SnapshotStore) -> str:
    cached = store.snapshots()
    if cached:
        return "Cached snapshots you can use instead (--snapshot ID): " + "; ".join(
            f"{s.id} ({s.source}: {', '.join(s.symbols)}, {s.start}..{s.end})" for s in reversed(cached)
        )
    return "No cached snapshots exist; the embedded source works offline: mlops data pull --source embedded"
