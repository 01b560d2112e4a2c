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

    Nothing falls back silently: a failed fetch raises :class:`PullError` naming the cached snapshots.
    """
    try:
        bars = source.fetch(on_symbol=on_symbol)
    except SourceError as error:
        cached = store.snapshots()
        if cached:
            hint = "Cached snapshots you can use instead (--snapshot ID): " + "; ".join(
                f"{s.id} ({s.source}: {', '.join(s.symbols)}, {s.start}..{s.end})" for s in reversed(cached)
            )
        else:
            hint = "No cached snapshots exist; the embedded source works offline: mlops data pull --source embedded"
        raise PullError(f"{source.name} pull failed: {error}\n{hint}") from error
    return store.write(bars, source=source.name, origin=source.describe())
