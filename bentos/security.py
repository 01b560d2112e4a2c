"""API keys and the request body limit, as plain ASGI middleware in front of every route of the service.

Authentication is off until keys are configured (``MLOPS_API_KEYS`` or ``MLOPS_API_KEYS_FILE``, see
:class:`bentos.settings.ServiceSettings`); then every API method answers 401 without a valid key, sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Health (``/livez``, ``/readyz``), ``/metrics`` and the
docs stay open. Keys are compared in constant time, as SHA-256 digests (so a key's length does not show in the
timing either) and against every configured key (so which key matched does not show), and they are neither logged
nor echoed. Several keys are allowed at once, for rotation: add the new one, move the clients, drop the old one.

The body limit answers 413 before anything is parsed: from ``Content-Length`` when the client sends it, else by
counting a chunked body as it arrives (buffered up to the limit, then replayed to the service). The rest of an
oversized body is read and dropped, never parsed or kept, so the client reads the 413 instead of a reset.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from bentos.client_errors import ASGIApp, Message, ProblemDetails, Receive, Scope, Send, answer_problem

UNAUTHORIZED = (
    "missing or invalid API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
    "(health, readiness, metrics and docs need none)"
)


#: How much of an oversized body is read and thrown away before the 413, so that a client that sends its whole
#: body before reading the answer (most do) gets the 413 rather than a reset connection. Beyond it, the answer is
#: sent at once and the connection may be reset under the client.
DRAIN_BYTES = 256 * 2**20


async def _drain(receive: Receive, limit: int = DRAIN_BYTES) -> None:
    """Read and discard the rest of a request body, up to ``limit`` bytes."""
    read = 0
    while read <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def presented_key(scope: Scope) -> bytes | None:
    """The key a request carries, from ``Authorization: Bearer`` or ``X-API-Key``."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
        elif name == b"x-api-key" and value.strip():
            return bytes(value.strip())
    return None


class ApiKeyMiddleware:
    """401 for a request to a protected path without one of the configured keys."""

    def __init__(self, app: ASGIApp, protected: Iterable[str], load_keys: Callable[[], list[str]]) -> None:
        self.app = app
        self.protected = frozenset(protected)
        # keys are read here, in the worker, from its environment: they never travel in the service's definition
        keys = load_keys()
        if not keys:
            raise ValueError("API key authentication is on (MLOPS_API_KEYS or MLOPS_API_KEYS_FILE) but no key is set")
        self._digests = [_digest(k) for k in keys]

    def accepts(self, key: bytes | None) -> bool:
        """Whether ``key`` is one of the configured keys, in time independent of which one and of its value."""
        candidate = _digest(key or b"")
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(candidate, digest)
        return matched and key is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.protected and not self.accepts(presented_key(scope)):
            await answer_problem(
                send, 401, UNAUTHORIZED, "unauthorized", [(b"www-authenticate", b'Bearer realm="mlops_finance"')]
            )
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a request body larger than ``max_bytes``, found before the service reads or parses any of it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> str:
        return (
            f"request body of {size} is larger than the limit of {self.max_bytes} bytes "
            "(MLOPS_MAX_BODY_BYTES); send fewer windows a call"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        if (length := headers.get(b"content-length")) is not None:
            try:
                declared = int(length)
            except ValueError:
                detail = f"Content-Length {length.decode(errors='replace')!r} is not a number"
                await answer_problem(send, 400, detail, "malformed-request")
                return
            if declared > self.max_bytes:
                if declared <= DRAIN_BYTES:
                    await _drain(receive)
                await answer_problem(send, 413, self._too_large(f"{declared} bytes"), "too-large")
                return
            await self.app(scope, receive, send)
            return
        # no declared length (chunked): read it here, up to the limit, and hand the service what was read
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_BYTES - size)
                await answer_problem(send, 413, self._too_large(f"more than {self.max_bytes} bytes"), "too-large")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


FORM_MEDIA_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


class FormBodiesRefused:
    """415 for a form body (multipart or urlencoded) sent to the API, which takes JSON.

    BentoML 1.4.40 parses such bodies as forms, and answers a malformed multipart body (no boundary, or a body
    that is not multipart) with 500: Starlette's 400 for it is caught as an unexpected error.
    """

    def __init__(self, app: ASGIApp, routes: Iterable[str]) -> None:
        self.app = app
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            content_type = dict(scope.get("headers", ())).get(b"content-type", b"").decode("latin-1")
            media_type = content_type.split(";")[0].strip().lower()
            if media_type in FORM_MEDIA_TYPES:
                message = f"Content-Type {media_type} is not accepted: send the body as JSON (application/json)"
                await answer_problem(send, 415, message, "unsupported-media-type")
                return
        await self.app(scope, receive, send)


def guard_http(service: Any, settings: Any) -> None:
    """Put the service's HTTP guards in front of every route of a BentoML ``service``, outermost first.

    Every 4xx as a problem-details body (``bentos.client_errors.ProblemDetails``, outermost, so that it sees the
    guards' answers too), API keys (when configured; before anything reads an unauthenticated body), the body size
    limit, and 415 for form bodies. ``settings`` is a ``bentos.settings.ServiceSettings``. The service benchmark's
    echo has the same guards.
    """
    routes = [method.route for method in service.apis.values()]
    service.add_asgi_middleware(ProblemDetails)
    if settings.authentication:
        service.add_asgi_middleware(
            ApiKeyMiddleware,
            protected=routes,
            load_keys=lambda: type(settings)().load_api_keys(),  # read in the worker: no key in the service object
        )
    service.add_asgi_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    service.add_asgi_middleware(FormBodiesRefused, routes=routes)
