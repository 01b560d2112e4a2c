"""The snapshot store: content-addressed, write-once, atomic, verified on read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from data.pull import pull
from data.snapshots import BARS_FILE, MANIFEST_FILE, SnapshotError, SnapshotStore, content_id
from data.sources import EmbeddedSource
from tests.conftest import as_panel, make_bars


def panel(seed: int = 0) -> pd.DataFrame:
    return as_panel(("AAA", make_bars(50, seed=seed)), ("BBB", make_bars(30, seed=seed + 1)))


def test_write_records_a_manifest(store: SnapshotStore) -> None:
    info, created = store.write(panel(), source="test", origin={"note": "unit"})
    assert created
    manifest = json.loads((store.path(info.id) / MANIFEST_FILE).read_text())
    assert manifest["id"] == info.id
    assert manifest["source"] == "test"
    assert manifest["symbols"] == ["AAA", "BBB"]
    assert manifest["rows"] == 80
    assert manifest["rows_per_symbol"] == {"AAA": 50, "BBB": 30}
    assert manifest["start"] == "2020-01-02"
    assert manifest["end"] == str(make_bars(50)["date"].iloc[-1].date())
    assert manifest["origin"] == {"note": "unit"}
    assert manifest["created_at"].endswith("+00:00")


def test_same_data_twice_gives_the_same_id_and_writes_nothing(store: SnapshotStore) -> None:
    first, created = store.write(panel(), source="test")
    files = sorted(store.root.rglob("*"))
    stamps = [p.stat().st_mtime_ns for p in files]
    shuffled = panel().sample(frac=1.0, random_state=3)  # symbols interleaved in another order
    shuffled = (
        shuffled.sort_values(["symbol", "date"]).sample(frac=1, random_state=1).sort_values("date", kind="stable")
    )
    again, created_again = store.write(shuffled, source="other")
    assert created
    assert not created_again
    assert again == first
    assert sorted(store.root.rglob("*")) == files
    assert [p.stat().st_mtime_ns for p in files] == stamps


def test_different_data_gives_a_different_id(store: SnapshotStore) -> None:
    changed = panel()
    changed.loc[10, "volume"] += 1
    assert content_id(panel().sort_values(["symbol", "date"])) != content_id(changed.sort_values(["symbol", "date"]))
    a, _ = store.write(panel(), source="test")
    b, _ = store.write(changed, source="test")
    assert a.id != b.id
    assert len(store.snapshots()) == 2


def test_snapshot_files_are_read_only(store: SnapshotStore) -> None:
    info, _ = store.write(panel(), source="test")
    for name in (BARS_FILE, MANIFEST_FILE):
        mode = (store.path(info.id) / name).stat().st_mode
        assert mode & 0o222 == 0


def test_load_round_trips_and_detects_tampering(store: SnapshotStore) -> None:
    info, _ = store.write(panel(), source="test")
    loaded = store.load(info.id)
    assert content_id(loaded) == info.id
    assert len(loaded) == 80
    path = store.path(info.id) / BARS_FILE
    tampered = loaded.copy()
    tampered.loc[0, "close"] *= 1.0001
    os.chmod(path, 0o644)
    tampered.to_parquet(path, index=False)
    with pytest.raises(SnapshotError, match="corrupted"):
        store.load(info.id)


def test_resolve_latest_and_prefixes(store: SnapshotStore) -> None:
    with pytest.raises(SnapshotError, match="pull one first"):
        store.latest()
    a, _ = store.write(panel(0), source="test")
    b, _ = store.write(panel(5), source="test")
    assert store.resolve("latest") == b.id
    assert store.resolve(a.id[:8]) == a.id
    with pytest.raises(SnapshotError, match="no snapshot 'zzz'"):
        store.resolve("zzz")


def test_interrupted_write_leaves_no_partial_snapshot(store: SnapshotStore, tmp_path: Path) -> None:
    """A process killed between writing the bars and the manifest leaves nothing a reader would take."""
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(Path.cwd())!r})
        import data.snapshots as snapshots
        from tests.conftest import as_panel, make_bars
        original = snapshots._write_file
        def dying(path, write):
            original(path, write)
            if path.name == snapshots.BARS_FILE:
                os._exit(9)  # killed after the bars, before the manifest and the rename
        snapshots._write_file = dying
        store = snapshots.SnapshotStore({str(store.root)!r})
        store.write(as_panel(("AAA", make_bars(50))), source="test")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], check=False)
    assert result.returncode == 9
    leftovers = list(store.root.iterdir())
    assert leftovers
    assert all(p.name.startswith(".tmp-") for p in leftovers)
    assert store.snapshots() == []
    info, created = store.write(as_panel(("AAA", make_bars(50))), source="test")
    assert created
    assert [p.name for p in store.root.iterdir()] == [info.id]


def test_failed_write_cleans_up_and_raises(store: SnapshotStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self: pd.DataFrame, path: Path, **_: object) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.write(panel(), source="test")
    assert list(store.root.iterdir()) == []


def test_pulling_the_embedded_data_twice(store: SnapshotStore) -> None:
    first, created = pull(EmbeddedSource(), store)
    second, created_again = pull(EmbeddedSource(), store)
    assert created
    assert not created_again
    assert first == second
    assert first.rows == 10062
    assert first.symbols == ["^GSPC", "^IXIC"]
    assert (first.start, first.end) == ("1999-01-04", "2018-12-31")
