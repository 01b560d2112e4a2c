"""The monitor the service records its answers with (``bentos/recording.py``): BentoML's default monitor, exporting a
record's rows in one write.

``bentoml.monitoring.DefaultMonitor`` logs a record's rows one at a time through Python logging: a ``LogRecord``, the
logger's and handler's locks, python-json-logger's formatter and a flush per row. :class:`JsonLinesMonitor` keeps
everything else of it (its files, ``<log_path>/<name>/data/data.<worker>.log``, the daily rotation, the schema log,
``log_config_file``) and writes the same lines (one JSON object per row, the same keys and values, what
``monitoring/store.py`` ingests) to the data handler's file in one write and one flush, its lock held and its rollover
checked first: ~40 against ~65 us a one-row record in process (``/tmp`` script, Python 3.11). The service names it in
its ``monitoring`` settings (``type``); a BentoML configuration that names another type replaces it. A logging
configuration (``log_config_file``) whose data handler is not a file handler gets DefaultMonitor's own export.

Like DefaultMonitor's, a failed write (a full disk) does not fail the answer: it is reported on the ``bentos`` logger.
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
from collections import deque
from typing import Any

from bentoml.monitoring import DefaultMonitor

from bentos.bentoml_private import request_ids

LOGGER = logging.getLogger(__name__)


class JsonLinesMonitor(DefaultMonitor):
    """BentoML's default monitor, writing each record's rows as JSON lines in one write and one flush."""

    def export_data(self, datas: dict[str, deque[Any]]) -> None:
        if self.data_logger is None:
            self._init_logger()
        assert self.data_logger is not None
        handler = _file_handler(self.data_logger)
        if handler is None:
            super().export_data(datas)
            return
        request_id, trace_id = request_ids()
        extra = {
            self.COLUMN_TIME: datetime.datetime.now().isoformat(),
            self.COLUMN_RID: str(request_id),
            self.COLUMN_TID: str(trace_id),
        }
        names = list(datas)
        rows = zip(*datas.values(), strict=False)  # as many rows as the shortest column, as DefaultMonitor writes
        text = "".join(json.dumps(dict(zip(names, row, strict=True)) | extra) + "\n" for row in rows)
        for column in datas.values():  # consumed, as DefaultMonitor leaves them
            column.clear()
        handler.acquire()
        try:
            if isinstance(handler, logging.handlers.TimedRotatingFileHandler) and handler.shouldRollover(None):
                handler.doRollover()
            handler.stream.write(text)
            handler.flush()
        except Exception:
            LOGGER.exception("could not record %d rows of monitor %r", text.count("\n"), self.name)
        finally:
            handler.release()


def _file_handler(logger: logging.Logger) -> logging.FileHandler | None:
    """The logger's one handler when it is a file handler whose file is open and that rotates by time or not at all."""
    if len(logger.handlers) != 1:
        return None
    handler = logger.handlers[0]
    if type(handler) not in (logging.FileHandler, logging.handlers.TimedRotatingFileHandler):
        return None
    assert isinstance(handler, logging.FileHandler)
    return handler if handler.stream is not None else None
