"""The snapshot store: content-addressed, write-once, atomic, verified on read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import data.snapshots as snapshots
from data.pull import pull
from data.snapshots import (
    LEGACY_BARS_FILE,
    MANIFEST_FILE,
    SnapshotError,
    SnapshotInfo,
    SnapshotStore,
    canonical_order,
    content_id,
)
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
    paths = [store.path(info.id) / MANIFEST_FILE]
    paths += [store.path(info.id) / part["path"] for part in info.partitions.values()]
    for path in paths:
        assert path.stat().st_mode & 0o222 == 0
    for folder in {path.parent for path in paths[1:]}:
        assert folder.stat().st_mode & 0o222 == 0


def test_a_snapshot_is_partitioned_by_symbol(store: SnapshotStore) -> None:
    """One Hive-style Parquet file per symbol, named in the manifest with its digest; symbols are percent-encoded."""
    bars = as_panel(("AAA", make_bars(50)), ("^GSPC", make_bars(40, seed=2)), ("BRK/B", make_bars(30, seed=3)))
    info, _ = store.write(bars, source="test")
    assert info.format_version == 2
    assert info.partitions["^GSPC"]["path"] == "bars/symbol=%5EGSPC/part-0.parquet"
    assert info.partitions["BRK/B"]["path"] == "bars/symbol=BRK%2FB/part-0.parquet"
    manifest = json.loads((store.path(info.id) / MANIFEST_FILE).read_text())
    assert manifest["partitions"] == info.partitions
    files = sorted(p.relative_to(store.path(info.id)).as_posix() for p in store.path(info.id).rglob("*.parquet"))
    assert files == sorted(part["path"] for part in info.partitions.values())
    one = pq.read_table(store.path(info.id) / info.partitions["^GSPC"]["path"])
    assert one.num_rows == 40
    assert SnapshotStore(store.root).info(info.id) == info


def test_load_round_trips_and_detects_tampering(store: SnapshotStore) -> None:
    info, _ = store.write(panel(), source="test")
    loaded = store.load(info.id)
    assert content_id(loaded) == info.id
    pd.testing.assert_frame_equal(loaded, canonical_order(panel()), check_dtype=False)
    assert len(loaded) == 80
    path = store.path(info.id) / info.partitions["AAA"]["path"]
    tampered = pq.read_table(path).to_pandas()
    tampered.loc[0, "close"] *= 1.0001
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o644)
    tampered.to_parquet(path, index=False)
    with pytest.raises(SnapshotError, match="corrupted"):
        store.load(info.id)
    with pytest.raises(SnapshotError, match="the file of 'AAA' does not match its digest"):
        store.load(info.id, symbols=["AAA"])
    assert len(store.load(info.id, symbols=["BBB"])) == 30  # the other symbol's file is intact


def test_a_partial_load_reads_only_the_symbols_asked_for(store: SnapshotStore) -> None:
    info, _ = store.write(panel(), source="test")
    whole = store.load(info.id)
    os.chmod(store.path(info.id) / info.partitions["AAA"]["path"], 0)  # unreadable: a read of it would fail
    only_b = store.load(info.id, symbols=["BBB"])
    pd.testing.assert_frame_equal(only_b, whole[whole["symbol"] == "BBB"].reset_index(drop=True))
    with pytest.raises(SnapshotError, match="has no symbol 'CCC'"):
        store.load(info.id, symbols=["BBB", "CCC"])


def test_format_1_snapshots_still_load(store: SnapshotStore) -> None:
    """A snapshot written before partitioning (one bars.parquet, no partitions in its manifest) reads the same."""
    info, _ = store.write(panel(), source="test")
    frame = store.load(info.id)  # validated bars, as format 1 wrote them
    legacy_id = content_id(frame)
    legacy = store.root / "legacy" / legacy_id
    legacy.mkdir(parents=True)
    frame.to_parquet(legacy / LEGACY_BARS_FILE, index=False)
    manifest = {k: v for k, v in info.to_dict().items() if k != "partitions"} | {"format_version": 1}
    (legacy / MANIFEST_FILE).write_text(json.dumps(manifest))
    old = SnapshotStore(store.root / "legacy")
    assert old.info(legacy_id) == SnapshotInfo(**manifest)
    pd.testing.assert_frame_equal(old.load(legacy_id), store.load(info.id))
    pd.testing.assert_frame_equal(old.load(legacy_id, symbols=["BBB"]), store.load(info.id, symbols=["BBB"]))


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
            if path.name == snapshots.PARTITION_FILE:
                os._exit(9)  # killed after a symbol's bars, before the manifest and the rename
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
    def disk_full(table: object, path: Path, **_: object) -> None:
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(snapshots.pq, "write_table", disk_full)
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
    assert first.id == "fb91f313324c500b2c3a"  # the id format 1 gave these bars: the layout does not change it
    assert first.symbols == ["^GSPC", "^IXIC"]
    assert (first.start, first.end) == ("1999-01-04", "2018-12-31")
