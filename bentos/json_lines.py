"""The service's monitor class: BentoML's monitoring API (``bentoml.monitor``) writing each record as JSON lines in
one ``write`` call, the lines BentoML's default monitor writes (the columns, then ``timestamp``, ``request_id`` and
``trace_id``).

Why not BentoML's default monitor: it logs each value with a call per column and each row through Python logging and
python-json-logger (``logging.FileHandler``), which measured ~150-180 us a row in process against ~60-100 us here, and
cost ``predict_direction`` 19 % of its throughput under load (``benchmarks/results/service.md``). This class is
BentoML's documented extension point (``monitoring.type``), so the BentoML configuration can still choose another
(``default``, ``otlp``, a class of one's own).

Files: ``<log_path>/<name>/data/data.<worker>.<UTC date>.log``, a new file each day (never renamed: ingestion reads a
file while it grows), and the schema once per worker in ``<log_path>/<name>/schema/schema.<worker>.log``. Each record
is one ``os.write`` of whole lines to a file opened with ``O_APPEND``: the kernel appends it in one piece, so the
lines of concurrent requests (the thread pool's) never interleave, and it is in the page cache when the answer
leaves: a stopped or killed server loses nothing written; a crash of the machine itself can lose what the kernel had
not flushed yet.
"""

from __future__ import annotations

import json
import os
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
from bentoml.monitoring import MonitorBase

from bentos.bentoml_private import request_ids

#: the record being logged in this context: column -> values
_RECORD: ContextVar[dict[str, list[Any]] | None] = ContextVar("mlops_monitor_record", default=None)


class JsonLinesMonitor(MonitorBase[Any]):
    """``bentoml.monitor``'s records as JSON lines, one write a record (see the module's docstring)."""

    PRESERVED_COLUMNS = ("timestamp", "request_id", "trace_id")

    def __init__(self, name: str, log_path: str, **_: Any) -> None:
        super().__init__(name)
        self.folder = Path(log_path) / name
        self._columns: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._file: tuple[str, int] | None = None  # (day, descriptor)

    # the record: started and stopped by bentoml.monitor around the caller's log calls
    def start_record(self) -> None:
        _RECORD.set({})

    def log(self, data: Any, name: str, role: str, data_type: str) -> None:
        self.log_batch([data], name, role, data_type)

    def log_batch(self, data_batch: Any, name: str, role: str, data_type: str) -> None:
        record = _RECORD.get()
        if record is None:
            raise RuntimeError("log outside a record: use `with bentoml.monitor(name) as monitor`")
        if name in self.PRESERVED_COLUMNS:
            name += "_"
        if self.columns_schema is None and name not in self._columns:
            self._columns[name] = {"name": name, "role": role, "type": data_type}
        record.setdefault(name, []).extend(data_batch)

    def stop_record(self) -> None:
        record = _RECORD.get()
        _RECORD.set(None)
        if not record:  # nothing logged: nothing written (and no state left behind)
            return
        if self.columns_schema is None:
            self.columns_schema = dict(self._columns)
            self.export_schema(self.columns_schema)
        self.export_data(record)

    # the files
    def export_schema(self, columns_schema: dict[str, dict[str, str]]) -> None:
        path = self.folder / "schema" / f"schema.{_worker()}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"bento_name": bentoml.server_context.bento_name, "bento_version": bentoml.server_context.bento_version}
        with path.open("a") as handle:
            handle.write(json.dumps({"meta_data": meta, "columns": list(columns_schema.values())}) + "\n")

    def export_data(self, datas: Any) -> None:
        now = datetime.now(UTC)
        request_id, trace_id = request_ids()
        extra = {"timestamp": now.isoformat(), "request_id": request_id, "trace_id": trace_id}
        names = list(datas)
        rows = zip(*datas.values(), strict=True)
        lines = "".join(json.dumps(dict(zip(names, row, strict=True)) | extra) + "\n" for row in rows)
        os.write(self._descriptor(now.date().isoformat()), lines.encode("utf-8"))

    def _descriptor(self, day: str) -> int:
        opened = self._file
        if opened is not None and opened[0] == day:
            return opened[1]
        with self._lock:
            if self._file is None or self._file[0] != day:
                path = self.folder / "data" / f"data.{_worker()}.{day}.log"
                path.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                if self._file is not None:
                    os.close(self._file[1])
                self._file = (day, descriptor)
            return self._file[1]


def _worker() -> int:
    return bentoml.server_context.worker_index or 0
