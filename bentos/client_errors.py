"""Client errors in the server log: one warning line each, not an error with a traceback.

BentoML logs every exception an API method raises at ERROR with its traceback, including the 4xx answers to bad
input, so a client sending bad bars would fill the log with tracebacks that say nothing about the server. This filter
turns those records (a :class:`BentoMLException` with a 4xx code, or pydantic's validation error, answered 400) into
one WARNING line with the status and the message the client got; real server errors keep their traceback.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

#: the logger BentoML's HTTP app reports API exceptions on
BENTOML_APP_LOGGER = "bentoml._internal.server.http_app"


def client_status(error: BaseException | None) -> int | None:
    """The 4xx status BentoML answers ``error`` with, or None when it is a server error."""
    if isinstance(error, ValidationError):
        return int(HTTPStatus.BAD_REQUEST)
    if isinstance(error, BentoMLException) and 400 <= int(error.error_code) < 500:
        return int(error.error_code)
    return None


class ClientErrorLogFilter(logging.Filter):
    """Rewrites a logged 4xx exception as a one-line warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        status = client_status(error)
        if status is None:
            return True
        where = record.getMessage().removeprefix("Exception on ")
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        record.msg, record.args = "Client error on %s: %d %s", (where, status, first_line[:300])
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def install() -> None:
    """Attach the filter to BentoML's HTTP app logger (idempotent)."""
    logger = logging.getLogger(BENTOML_APP_LOGGER)
    if not any(isinstance(f, ClientErrorLogFilter) for f in logger.filters):
        logger.addFilter(ClientErrorLogFilter())
