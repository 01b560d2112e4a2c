"""The prediction store: the service's recorded answers (``bentos/recording.py``) in a database, each stored once.

By default an SQLite file under ``MLOPS_HOME`` (``data/monitoring/predictions.sqlite``): it is in Python's standard
library and SQLAlchemy's, takes one writer with transactions (what a daily ingestion job needs) and any number of
readers; DuckDB would add a dependency for analytics over volumes this store does not hold (a row per answer).
``MLOPS_MONITOR_DATABASE_URL`` names another database, e.g. ``postgresql+psycopg://user:pass@host/db``; the
same SQLAlchemy Core statements run on both.

Ingestion reads the JSON lines of BentoML's default monitor (``<log dir>/predictions/data/data.<worker>.log`` and its
rotated copies). A row's key is the SHA-256 of its line, and rows are inserted with "on conflict do nothing": a
record is stored once however often the job reads the same logs. Each file's progress (its inode and the bytes read,
up to the last complete line) is committed in the same transaction as its rows, so a job killed midway leaves the
store as it was before that file's chunk, and the next run resumes there. A line that does not parse is counted and
named in the report; one that is cut short by a crash and then continued by the restarted server's next line is
recovered from the start of that next line.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bentos.recording import MONITOR, NAMES
from data.settings import DataSettings

#: Rows inserted per transaction.
CHUNK_ROWS = 5_000
DATABASE_URL_VARIABLE = "MLOPS_MONITOR_DATABASE_URL"

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("recorded_at", sa.String(40), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("symbol", sa.String(64), nullable=False),
    sa.Column("as_of", sa.String(10), nullable=False),
    sa.Column("horizon_days", sa.Integer, nullable=False),
    sa.Column("target_date", sa.String(10), nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("window", sa.String(96), nullable=False),
    sa.Column("prediction", sa.Float, nullable=False),
    sa.Column("label", sa.String(64), nullable=False),
    sa.Column("ingested_at", sa.String(40), nullable=False),
)
progress = sa.Table(
    "ingested_files",
    metadata,
    sa.Column("inode", sa.String(40), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("bytes_read", sa.BigInteger, nullable=False),
)


def default_url(settings: DataSettings | None = None) -> str:
    """``MLOPS_MONITOR_DATABASE_URL``, or the SQLite file under ``MLOPS_HOME``."""
    if url := os.environ.get(DATABASE_URL_VARIABLE):
        return url
    path = (settings or DataSettings()).home / "data" / "monitoring" / "predictions.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


@dataclass
class IngestReport:
    """What one ingestion did: lines read, rows new to the store, lines skipped and why."""

    files: int = 0
    lines: int = 0
    new: int = 0
    already_stored: int = 0
    unreadable: list[str] = field(default_factory=list)  # "<file>:<line>: <reason>"


class PredictionStore:
    """The recorded answers in a database (SQLite by default, PostgreSQL by URL)."""

    def __init__(self, url: str | None = None):
        self.url = url or default_url()
        self.engine = sa.create_engine(self.url)
        metadata.create_all(self.engine)

    def _insert(self, table: sa.Table) -> Any:
        dialect = self.engine.dialect.name
        module = postgresql if dialect == "postgresql" else sqlite if dialect == "sqlite" else None
        if module is None:
            raise ValueError(f"the prediction store runs on SQLite or PostgreSQL, not {dialect}")
        return module.insert(table)

    def ingest(self, log_dir: Path) -> IngestReport:
        """Store every recorded answer under ``log_dir`` that is not stored yet: a monitor log path, or a folder of
        them, one per server (``<log_dir>/<pod>/``, as the Kubernetes manifests give each replica)."""
        report = IngestReport()
        root = Path(log_dir)
        files = sorted(root.glob(f"{MONITOR}/data/data.*.log*")) + sorted(root.glob(f"*/{MONITOR}/data/data.*.log*"))
        for path in files:
            report.files += 1
            self._ingest_file(path, report)
        return report

    def _ingest_file(self, path: Path, report: IngestReport) -> None:
        inode = f"{path.stat().st_dev}:{path.stat().st_ino}"
        with self.engine.connect() as connection:
            done = connection.execute(sa.select(progress.c.bytes_read).where(progress.c.inode == inode)).scalar()
        start = int(done or 0)
        if start > path.stat().st_size:  # the file was replaced or truncated: read it again (rows stay unique)
            start = 0
        upsert = self._insert(progress)
        upsert = upsert.on_conflict_do_update(
            index_elements=[progress.c.inode],
            set_={"bytes_read": upsert.excluded.bytes_read, "path": upsert.excluded.path},
        )
        insert = self._insert(predictions).on_conflict_do_nothing(index_elements=[predictions.c.key])
        for rows, end in _chunks(path, start, report):
            with self.engine.begin() as connection:  # the rows and the progress together, or neither
                if rows:
                    before = _count(connection)
                    connection.execute(insert, rows)
                    added = _count(connection) - before
                    report.new += added
                    report.already_stored += len(rows) - added
                connection.execute(upsert, [{"inode": inode, "path": str(path), "bytes_read": end}])

    def count(self) -> int:
        with self.engine.connect() as connection:
            return _count(connection)

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        """Stored rows (as dicts), filtered by equality on columns, by recording time (the rows of one answer share
        it)."""
        query = sa.select(predictions).order_by(predictions.c.recorded_at, predictions.c.key)
        for column, value in where.items():
            query = query.where(predictions.c[column] == value)
        with self.engine.connect() as connection:
            return [dict(r._mapping) for r in connection.execute(query)]


def _count(connection: sa.Connection) -> int:
    return int(connection.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one())


def _chunks(path: Path, start: int, report: IngestReport) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Rows of the complete lines of ``path`` from byte ``start``, ``CHUNK_ROWS`` at a time, each with the byte
    offset just past its last line."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    rows: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        handle.seek(start)
        offset = start
        for number, raw in enumerate(handle, start=1):
            if not raw.endswith(b"\n"):  # being written, or cut short by a crash: not yet a record
                break
            offset += len(raw)
            report.lines += 1
            parsed = _parse(raw.rstrip(b"\n"))
            if isinstance(parsed, str):
                report.unreadable.append(f"{path.name}:+{number}: {parsed}")
            else:
                parsed["ingested_at"] = now
                rows.append(parsed)
            if len(rows) >= CHUNK_ROWS:
                yield rows, offset
                rows = []
    yield rows, offset


def _parse(line: bytes) -> dict[str, Any] | str:
    """A stored row from one JSON line, or the reason it is not one."""
    text = line.decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        # a line cut short by a crash, continued by the restarted server's next record: keep that record
        start = text.rfind('{"method"')
        if start <= 0:
            return "not JSON"
        text = text[start:]
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            return "not JSON"
    if not isinstance(record, dict):
        return "not a record"
    missing = [name for name in NAMES if name not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    row = {name: record[name] for name in NAMES}
    row["recorded_at"] = str(record.get("timestamp", ""))
    row["request_id"] = str(record.get("request_id", ""))
    row["key"] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    wrong = _unstorable(row)
    return wrong or row


def _unstorable(row: dict[str, Any]) -> str:
    """Why a parsed row cannot be stored as it is in every backend (PostgreSQL refuses a NUL in text and a string
    over its column's length, and would fail the whole chunk with it), or ``""``."""
    for column in predictions.columns:
        if column.name not in row:
            continue
        value = row[column.name]
        if isinstance(column.type, sa.String):
            if not isinstance(value, str):
                return f"{column.name} is not text"
            if "\x00" in value:
                return f"{column.name} holds a NUL character"
            if column.type.length is not None and len(value) > column.type.length:
                return f"{column.name} longer than {column.type.length} characters"
        elif isinstance(column.type, sa.Integer) and (not isinstance(value, int) or isinstance(value, bool)):
            return f"{column.name} is not an integer"
        elif isinstance(column.type, sa.Float) and (not isinstance(value, int | float) or isinstance(value, bool)):
            return f"{column.name} is not a number"
    return ""
