"""Client errors: one answer envelope for every 4xx, and one warning line each in the server log.

**The envelope.** Every 4xx the service answers (400, 401, 404, 413, 415, 422 and any other, e.g. Starlette's 404
for an unknown path or 405 for a wrong method) has one shape, modelled on RFC 9457 problem details::

    {"type": "tag:mlops-finance,2026:problems/ohlcv-contract", "title": "Bars that break the OHLCV contract",
     "status": 422, "detail": "bars: 1 OHLCV violation(s): ...",
     "errors": [{"loc": ["bars", "low"], "row": 9, "rule": "price_not_positive", "message": "row 9, ..."}]}

``type`` names the kind of problem (a tag URI: stable, not meant to be fetched; ``about:blank`` for a plain HTTP
error, whose ``title`` is then the status phrase), ``title`` says it in words (the same for every problem of the
type), ``detail`` says what is wrong with this request, and ``errors`` lists each wrong thing where there are such
(pydantic's field errors, the OHLCV contract's broken rows and rules), else is empty. The schema is
``bentos.schemas.Problem``, one component of the OpenAPI document that every method's 4xx answers reference.

It is served as ``application/problem+json`` (RFC 9457 section 3): the media type tells a client and generic tooling
that the body is a problem-details object without reading it, and every JSON parser reads it (``response.json()``
of requests and httpx, ``fetch(...).json()``, Swagger UI, BentoML's client, which keeps the text). The old bodies'
``error`` field is not kept: half the old shapes change anyway (the list of one ``{"error": ...}`` of the 404, 413
and 422 answers, the 400's ``detail`` list), so a client has to read the new shape once, and one field per meaning
keeps it from reading the old one forever.

BentoML 1.4 answers a method's exceptions itself (``[{"error": message}]``, or ``{"error": ..., "detail": [...]}``
for pydantic's 400), with no hook to shape them, so :class:`ProblemDetails`, ASGI middleware in front of the routes
(``Service.add_asgi_middleware``, public), rewrites the 4xx answers passing through it. The structured ``errors`` of
the service's own exceptions (:class:`ClientError`) reach it through a context variable: an error made while a
request is handled is recorded in that request's context (the thread BentoML runs a plain method in copies it), and
the middleware takes the one whose message BentoML answered with. The 2xx path pays one context variable set and
one status comparison (~3 us a request, measured). BentoML's own traffic middleware sits in front of the service's
and is not covered: its 429 when ``traffic.max_concurrency`` is set (this service does not set it).

**The log.** BentoML logs every exception an API method raises at ERROR with its traceback, including the 4xx answers
to bad input, so a client sending bad bars would fill the log with tracebacks that say nothing about the server.
:class:`ClientErrorLogFilter` turns those records (a :class:`BentoMLException` with a 4xx code, or pydantic's
validation error, answered 400) into one WARNING line with the status and the message the client got; real server
errors keep their traceback.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from http import HTTPStatus
from typing import Any

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

from bentos.bentoml_private import BENTOML_APP_LOGGER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM_MEDIA_TYPE = "application/problem+json"
_PROBLEM = PROBLEM_MEDIA_TYPE.encode()
PROBLEM_TYPE_PREFIX = "tag:mlops-finance,2026:problems/"

#: the kinds of problem the service names: type (after :data:`PROBLEM_TYPE_PREFIX`) -> (status, title)
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "malformed-request": (400, "The request is not JSON of the documented shape and types"),
    "unauthorized": (401, "Missing or invalid API key"),
    "unknown-symbol": (404, "Unknown symbol"),
    "too-large": (413, "Over a size limit"),
    "unsupported-media-type": (415, "Unsupported media type: send JSON"),
    "ohlcv-contract": (422, "Bars that break the OHLCV contract"),
    "unusable-window": (422, "A window the models cannot use"),
}
#: the type of a 4xx whose cause was not recorded, by status (else ``about:blank``)
DEFAULT_TYPES = {400: "malformed-request", 401: "unauthorized", 413: "too-large", 415: "unsupported-media-type"}
#: the tags of the two forms of a window (``bentos.schemas.Window``), which pydantic puts in its error locations
WINDOW_FORMS = ("columns", "records")
#: how many of pydantic's errors a 400's ``detail`` lists (``errors`` has them all)
LISTED_FIELD_ERRORS = 5

Loc = tuple[str | int, ...]


def problem_type(kind: str) -> str:
    return PROBLEM_TYPE_PREFIX + kind if kind in PROBLEM_TYPES else "about:blank"


def problem(status: int, detail: str, kind: str | None = None, errors: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A problem-details body (see the module docstring)."""
    if kind in PROBLEM_TYPES:
        title = PROBLEM_TYPES[kind][1]
    else:
        kind = None
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Client error"
    return {
        "type": problem_type(kind) if kind else "about:blank",
        "title": title,
        "status": status,
        "detail": detail or title,
        "errors": list(errors),
    }


def item(loc: Iterable[str | int], rule: str, message: str, row: int | None = None) -> dict[str, Any]:
    """One entry of a problem's ``errors``: where (``loc``, and ``row`` for a window's bar), which rule, what."""
    return {"loc": list(loc), "row": row, "rule": rule, "message": message}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()


async def answer_problem(
    send: Send,
    status: int,
    detail: str,
    kind: str | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Send a problem-details answer (for middleware that answers before the service)."""
    body = encode(problem(status, detail, kind))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---- the service's own client errors ---------------------------------------------------------------------

_recorded: contextvars.ContextVar[list[ClientError] | None] = contextvars.ContextVar(
    "mlops_client_errors", default=None
)


class ClientError(BentoMLException):
    """A 4xx the service raises: BentoML answers with its status and message, :class:`ProblemDetails` adds its
    problem ``kind`` and structured ``errors``. Subclasses set ``error_code`` and ``kind``."""

    kind: str = ""

    def __init__(self, message: str, errors: Sequence[dict[str, Any]] = (), kind: str | None = None) -> None:
        super().__init__(message)
        self.errors = list(errors)
        if kind is not None:
            self.kind = kind
        self.record()

    def record(self) -> None:
        """Keep this error for the answer to the request being handled (if any): made where the request is handled,
        it is recorded already; one made elsewhere (a computation shared by several requests) is recorded by the
        request it is raised to."""
        recorded = _recorded.get()
        if recorded is not None:
            recorded.append(self)

    def located(self, where: str, loc: Loc) -> ClientError:
        """The same error about the window at ``loc`` (e.g. ``("windows", 3)``), its message prefixed with ``where``."""
        errors = [{**e, "loc": [*loc, *e["loc"][1:]]} for e in self.errors]
        return type(self)(f"{where}: {self}", errors, self.kind)


WINDOW_FORMS_MESSAGE = (
    "a window of bars is an object of columns ({'date': [...], 'open': [...], 'high': [...], 'low': [...], "
    "'close': [...], 'volume': [...]}) or a list of bar objects ([{'date': ..., 'open': ..., ...}, ...])"
)


def field_errors(details: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors (BentoML's 400 ``detail``) as problem items.

    A window (``bentos.schemas.Window``) is tried as columns, then as a list of bar objects, and pydantic reports
    both tries: only the errors of the form that was sent are kept (the other fails at its root: an object is not a
    list), and a value that is neither gets one error saying both forms. The form's tag is taken out of each
    location, and the row of a bar is given in either form (``["bars", "close", 4]``, ``["bars", 4, "close"]``).
    """
    located = []
    for error in details:
        loc = list(error.get("loc", ()))
        at = next((i for i, part in enumerate(loc) if i > 0 and part in WINDOW_FORMS), None)
        located.append((error, loc, at))
    tried: dict[tuple[Any, ...], dict[str, bool]] = {}  # window -> form -> whether its errors are deeper than the root
    for _, loc, at in located:
        if at is not None:
            forms = tried.setdefault(tuple(loc[:at]), {})
            forms[loc[at]] = forms.get(loc[at], False) or len(loc) > at + 1
    items = []
    merged = set()
    for error, loc, at in located:
        if at is None:
            items.append(item(loc, str(error.get("type", "invalid")), str(error.get("msg", ""))))
            continue
        window, form, rest = tuple(loc[:at]), loc[at], loc[at + 1 :]
        if not any(tried[window].values()):  # neither form: one error for the window
            if window not in merged:
                merged.add(window)
                items.append(item(window, "window_form", WINDOW_FORMS_MESSAGE))
            continue
        if not rest:  # the form that was not sent
            continue
        row = rest[1] if form == WINDOW_FORMS[0] and len(rest) > 1 else rest[0]
        row = row if isinstance(row, int) else None
        items.append(item([*window, *rest], str(error.get("type", "invalid")), str(error.get("msg", "")), row))
    return items


def _dotted(loc: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"


def _from_answer(status: int, body: bytes, content_type: bytes, recorded: list[ClientError]) -> dict[str, Any]:
    """The problem for a 4xx answer the service (BentoML, Starlette or our code) gave in another shape."""
    payload: Any = None
    if b"json" in content_type:
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
        payload = payload[0]  # BentoML's answer to a BentoMLException: [{"error": message}]
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        message = payload["error"]
        if isinstance(payload.get("detail"), list):  # BentoML's answer to pydantic's ValidationError
            errors = field_errors(payload["detail"])
            listed = "; ".join(f"{_dotted(e['loc'])}: {e['message']}" for e in errors[:LISTED_FIELD_ERRORS])
            more = f"; and {len(errors) - LISTED_FIELD_ERRORS} more" if len(errors) > LISTED_FIELD_ERRORS else ""
            detail = f"{len(errors)} field error(s) in the request: {listed}{more}"
            return problem(status, detail, "malformed-request", errors)
        for error in reversed(recorded):
            if int(error.error_code) == status and str(error) == message:
                return problem(status, message, error.kind, error.errors)
        return problem(status, message, DEFAULT_TYPES.get(status))
    text = body.decode("utf-8", errors="replace").strip()
    return problem(status, text, DEFAULT_TYPES.get(status) if status != 404 else None)


class ProblemDetails:
    """ASGI middleware: every 4xx answer passing through is a problem-details body (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recorded: list[ClientError] = []
        token = _recorded.set(recorded)
        start: Message | None = None
        passing = False
        chunks: list[bytes] = []

        async def reply(message: Message) -> None:
            nonlocal start, passing
            if passing:
                await send(message)
                return
            if start is None:
                status = message.get("status", 200)  # the first message starts the response
                if not 400 <= status < 500 or _PROBLEM in dict(message.get("headers", ())).get(b"content-type", b""):
                    passing = True
                    await send(message)
                    return
                start = message
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            answered = dict(start.get("headers", ())).get(b"content-type", b"")
            body = encode(_from_answer(start["status"], b"".join(chunks), answered, recorded))
            headers = [(k, v) for k, v in start.get("headers", ()) if k not in (b"content-type", b"content-length")]
            headers += [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        try:
            await self.app(scope, receive, reply)
        finally:
            _recorded.reset(token)


# ---- the log --------------------------------------------------------------------------------------------------


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
