"""The immutable snapshot store: validated bars written once, addressed by a hash of their content.

Layout: ``<root>/<id>/bars.parquet`` and ``<root>/<id>/manifest.json``. A snapshot is assembled in a hidden
temporary directory and renamed into place in one step, so a reader sees all of it or none of it, and an
interrupted pull leaves only a temporary directory that the next write sweeps away.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.ohlcv import SYMBOL_COLUMN, VALUE_COLUMNS, validate_ohlcv

BARS_FILE = "bars.parquet"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
_TEMP_PREFIX = ".tmp-"
_READ_ONLY_FILE = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
_READ_ONLY_DIR = _READ_ONLY_FILE | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH


class SnapshotError(RuntimeError):
    """A snapshot is missing, ambiguous or does not match its id."""


@dataclass(frozen=True)
class SnapshotInfo:
    """The manifest entry of a snapshot."""

    id: str
    source: str
    symbols: list[str]
    start: str
    end: str
    rows: int
    rows_per_symbol: dict[str, int]
    created_at: str
    origin: dict[str, Any]
    format_version: int = FORMAT_VERSION

    @property
    def synthetic(self) -> bool:
        """Bars made by ``data/synthetic.py``: for scale tests and benchmarks, never for quality figures."""
        return self.source == "synthetic"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def canonical_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Bars sorted by symbol then date, with a fresh index: the order that is hashed and stored."""
    return frame.sort_values([SYMBOL_COLUMN, "date"], kind="stable").reset_index(drop=True)


def content_id(frame: pd.DataFrame) -> str:
    """The snapshot id of validated bars in canonical order: a hash of their values, not of any file format."""
    digest = hashlib.sha256(f"ohlcv-v{FORMAT_VERSION}".encode())
    symbols = frame[SYMBOL_COLUMN].astype(str).to_numpy()
    digest.update("\0".join(symbols.tolist()).encode())
    days = frame["date"].to_numpy(dtype="datetime64[ns]").astype("datetime64[D]").astype("<i8")
    digest.update(days.tobytes())
    for name in VALUE_COLUMNS:
        digest.update(name.encode())
        digest.update(frame[name].to_numpy(dtype="<f8").tobytes())
    return digest.hexdigest()[:20]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, write: Any) -> None:
    write(path)
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    os.chmod(path, _READ_ONLY_FILE)


class SnapshotStore:
    """Content-addressed, write-once storage of validated bar panels."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, snapshot_id: str) -> Path:
        return self.root / snapshot_id

    def write(self, bars: pd.DataFrame, source: str, origin: dict[str, Any] | None = None) -> tuple[SnapshotInfo, bool]:
        """Store validated bars; return the snapshot and whether it is new (False: identical data was there)."""
        frame = canonical_order(validate_ohlcv(bars, panel=True))
        snapshot_id = content_id(frame)
        if self.exists(snapshot_id):
            return self.info(snapshot_id), False
        self.root.mkdir(parents=True, exist_ok=True)
        self.sweep_interrupted()
        info = _describe(frame, snapshot_id, source, origin or {})
        temp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-", dir=self.root))
        try:
            _write_file(temp / BARS_FILE, lambda p: frame.to_parquet(p, index=False))
            _write_file(temp / MANIFEST_FILE, lambda p: p.write_text(json.dumps(info.to_dict(), indent=2)))
            os.chmod(temp, _READ_ONLY_DIR)
            try:
                os.rename(temp, self.path(snapshot_id))
            except OSError:
                if self.exists(snapshot_id):  # another pull of the same data won the race
                    return self.info(snapshot_id), False
                raise
            _fsync_dir(self.root)
        finally:
            if temp.exists():
                _remove_tree(temp)
        return info, True

    def exists(self, snapshot_id: str) -> bool:
        return (self.path(snapshot_id) / MANIFEST_FILE).is_file()

    def info(self, snapshot_id: str) -> SnapshotInfo:
        path = self.path(self.resolve(snapshot_id)) / MANIFEST_FILE
        return SnapshotInfo(**json.loads(path.read_text()))

    def snapshots(self) -> list[SnapshotInfo]:
        """Every complete snapshot, oldest first."""
        if not self.root.is_dir():
            return []
        infos = [
            SnapshotInfo(**json.loads((entry / MANIFEST_FILE).read_text()))
            for entry in self.root.iterdir()
            if not entry.name.startswith(".") and (entry / MANIFEST_FILE).is_file()
        ]
        return sorted(infos, key=lambda info: (info.created_at, info.id))

    def latest(self) -> SnapshotInfo:
        snapshots = self.snapshots()
        if not snapshots:
            raise SnapshotError(f"no snapshots in {self.root}; pull one first: mlops data pull --source embedded")
        return snapshots[-1]

    def resolve(self, ref: str) -> str:
        """The full id for ``ref``: an id, a unique prefix of one, or ``latest``."""
        if ref == "latest":
            return self.latest().id
        if self.exists(ref):
            return ref
        matches = [info.id for info in self.snapshots() if info.id.startswith(ref)] if ref else []
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(info.id for info in self.snapshots()) or "none"
        if matches:
            raise SnapshotError(f"snapshot prefix {ref!r} is ambiguous: {', '.join(matches)}")
        raise SnapshotError(f"no snapshot {ref!r} in {self.root} (known: {known})")

    def load(self, ref: str = "latest", verify: bool = True) -> pd.DataFrame:
        """The bars of a snapshot; with ``verify``, check that they still hash to the snapshot's id."""
        snapshot_id = self.resolve(ref)
        frame = pd.read_parquet(self.path(snapshot_id) / BARS_FILE)
        if verify:
            actual = content_id(frame)
            if actual != snapshot_id:
                raise SnapshotError(
                    f"snapshot {snapshot_id} is corrupted: its bars hash to {actual}. "
                    "Delete the directory and pull the data again."
                )
        return frame

    def sweep_interrupted(self) -> list[Path]:
        """Remove temporary directories left by writers that no longer run; return what was removed."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for entry in self.root.glob(f"{_TEMP_PREFIX}*"):
            pid = entry.name[len(_TEMP_PREFIX) :].split("-", 1)[0]
            if pid.isdigit() and process_alive(int(pid)):
                continue
            _remove_tree(entry)
            removed.append(entry)
        return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (this one always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_tree(path: Path) -> None:
    def make_writable(function: Any, target: str, _: Any) -> None:
        os.chmod(target, stat.S_IRWXU)
        function(target)

    with contextlib.suppress(FileNotFoundError):
        os.chmod(path, stat.S_IRWXU)
    shutil.rmtree(path, onerror=make_writable)


def _describe(frame: pd.DataFrame, snapshot_id: str, source: str, origin: dict[str, Any]) -> SnapshotInfo:
    counts = frame.groupby(SYMBOL_COLUMN, sort=True).size()
    dates = frame["date"].to_numpy(dtype="datetime64[D]")
    return SnapshotInfo(
        id=snapshot_id,
        source=source,
        symbols=[str(s) for s in counts.index],
        start=str(np.min(dates)),
        end=str(np.max(dates)),
        rows=len(frame),
        rows_per_symbol={str(k): int(v) for k, v in counts.items()},
        created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        origin=origin,
    )
