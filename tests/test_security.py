"""API keys and the body limit: in front of every method, never in front of health, never in a log or a Bento."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import pytest

from bentos.schemas import example_window
from bentos.security import DRAIN_BYTES, UNAUTHORIZED, ApiKeyMiddleware, BodyLimitMiddleware
from bentos.settings import ServiceSettings
from deploy.bento import build, build_context
from tests.integration_helpers import post, served, status

KEYS = ("k-3f9a1c0d5e7b2a4c6d8e0f1a", "k-rotated-9b8c7d6e5f4a3b2c")


# ---- the middleware on its own ---------------------------------------------------------------------------


class Recorder:
    """An ASGI app that records the body it was given and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def call(
    app: Any, path: str = "/predict_direction", headers: dict[str, str] | None = None, chunks: tuple[bytes, ...] = ()
) -> tuple[int, dict[str, Any] | None, int]:
    """Send one POST through ``app``; return (status, decoded JSON error or None, body chunks read)."""
    pending = list(chunks) or [b"{}"]
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        chunk = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    code = sent[0]["status"]
    return code, (json.loads(body) if code != 200 else None), read


def keyed(app: Any) -> ApiKeyMiddleware:
    return ApiKeyMiddleware(app, protected=["/predict_direction", "/models"], load_keys=lambda: list(KEYS))


def test_a_protected_method_needs_one_of_the_keys() -> None:
    app = keyed(Recorder())
    code, error, read = call(app)
    assert (code, read) == (401, 0)  # nothing of the body was read
    assert error == {
        "type": "tag:mlops-finance,2026:problems/unauthorized",
        "title": "Missing or invalid API key",
        "status": 401,
        "detail": UNAUTHORIZED,
        "errors": [],
    }
    assert call(app, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert call(app, headers={"Authorization": f"Basic {KEYS[0]}"})[0] == 401
    assert call(app, headers={"X-API-Key": KEYS[0][:-1]})[0] == 401
    assert call(app, headers={"Authorization": f"Bearer {KEYS[0]}"})[0] == 200
    assert call(app, headers={"authorization": f"bearer {KEYS[1]}"})[0] == 200  # the second key: rotation
    assert call(app, headers={"X-API-Key": KEYS[1]})[0] == 200
    assert call(app, path="/readyz")[0] == 200  # not protected


def test_keys_come_from_the_environment_and_a_mounted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "keys"
    secret.write_text(f"# rotated 2026-11\n{KEYS[1]}\n\n", encoding="utf-8")
    monkeypatch.setenv("MLOPS_API_KEYS", f" {KEYS[0]} ,")
    monkeypatch.setenv("MLOPS_API_KEYS_FILE", str(secret))
    settings = ServiceSettings()
    assert settings.authentication and settings.load_api_keys() == list(KEYS)
    assert KEYS[0] not in repr(settings)  # a SecretStr: printing the settings does not print the key

    secret.write_text("# nothing yet\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no key"):
        ServiceSettings().load_api_keys()
    monkeypatch.delenv("MLOPS_API_KEYS_FILE")
    monkeypatch.setenv("MLOPS_API_KEYS", ",")
    with pytest.raises(ValueError, match="no key is set"):  # on, but empty: refuse to start rather than run open
        ApiKeyMiddleware(Recorder(), protected=["/models"], load_keys=ServiceSettings().load_api_keys)
    monkeypatch.delenv("MLOPS_API_KEYS")
    assert not ServiceSettings().authentication


def test_the_body_limit_answers_413_before_the_service_sees_a_declared_body() -> None:
    inner = Recorder()
    app = BodyLimitMiddleware(inner, max_bytes=1000)
    code, error, read = call(app, headers={"Content-Length": "1001"}, chunks=(b"a" * 501, b"b" * 500))
    assert (code, read, inner.bodies) == (413, 2, [])  # read and dropped, so the client gets to read the 413
    assert error is not None and "1001 bytes" in error["detail"] and "MLOPS_MAX_BODY_BYTES" in error["detail"]
    assert (error["status"], error["type"]) == (413, "tag:mlops-finance,2026:problems/too-large")
    code, _, read = call(app, headers={"Content-Length": str(DRAIN_BYTES + 1)})
    assert (code, read) == (413, 0)  # too big even to drain: answered at once
    assert call(app, headers={"Content-Length": "ten"})[0] == 400


def test_the_guards_answer_problem_details() -> None:
    """The guards' answers are problem-details bodies (bentos.client_errors), with their media type."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict_direction", "headers": [(b"content-length", b"x")]}
    asyncio.run(BodyLimitMiddleware(Recorder(), max_bytes=1000)(scope, receive, send))
    headers = dict(sent[0]["headers"])
    assert (sent[0]["status"], headers[b"content-type"]) == (400, b"application/problem+json")
    body = sent[1]["body"]
    assert int(headers[b"content-length"]) == len(body)
    assert json.loads(body)["type"] == "tag:mlops-finance,2026:problems/malformed-request"


def test_the_body_limit_counts_a_chunked_body_and_replays_a_small_one_whole() -> None:
    inner = Recorder()
    app = BodyLimitMiddleware(inner, max_bytes=1000)
    code, _, _ = call(app, chunks=(b"a" * 600, b"b" * 600, b"c" * 600))
    assert code == 413 and inner.bodies == []
    code, _, _ = call(app, chunks=(b"a" * 400, b"b" * 400, b"c" * 200))
    assert code == 200 and inner.bodies == [b"a" * 400 + b"b" * 400 + b"c" * 200]


# ---- a real server with keys -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_server(production_models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("keys")
    secret = directory / "api-keys"
    secret.write_text("\n".join(KEYS) + "\n", encoding="utf-8")
    log = directory / "serve.log"
    env = {"MLOPS_API_KEYS_FILE": str(secret), "MLOPS_MAX_BODY_BYTES": str(2 * 2**20)}
    with served("bentos.service:MarketModels", env=env, log_path=log) as url:
        yield url, log


@pytest.mark.integration
def test_served_methods_need_a_key_and_health_does_not(keyed_server: Any) -> None:
    url, log = keyed_server
    bars = {"bars": example_window()}
    for path in ("/readyz", "/livez", "/metrics", "/docs.json"):
        assert status(url + path) == 200, path
    code, answer = post(url + "/predict_direction", bars)
    assert code == 401 and answer["detail"] == UNAUTHORIZED and answer["status"] == 401
    code, answer = post(url + "/predict_direction", bars, headers={"Authorization": "Bearer not-a-key"})
    assert code == 401
    code, answer = post(url + "/predict_direction", bars, headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert code == 200 and answer["as_of"] == "2018-12-31"
    assert post(url + "/models", {}, headers={"X-API-Key": KEYS[1]})[0] == 200
    with bentoml.SyncHTTPClient(url, token=KEYS[1]) as client:  # BentoML's client sends the token as a Bearer key
        assert client.predict_volatility(bars=example_window())["annualized_volatility"] > 0
    text = log.read_text(errors="replace")
    assert all(key not in text for key in KEYS)  # neither the keys that worked nor the file's content


@pytest.mark.integration
def test_a_client_error_is_one_warning_line_in_the_log(keyed_server: Any) -> None:
    url, log = keyed_server
    bars = example_window()
    bars["low"] = [-1.0, *bars["low"][1:]]
    code, answer = post(url + "/predict_direction", {"bars": bars}, headers={"X-API-Key": KEYS[0]})
    assert code == 422 and "row 0" in answer["detail"] and answer["errors"][0]["row"] == 0
    code, _ = post(url + "/predict_direction", {"bars": {"date": "x"}}, headers={"X-API-Key": KEYS[0]})
    assert code == 400
    text = log.read_text(errors="replace")
    assert "Client error on /predict_direction [POST]: 422 bars: 1 OHLCV violation(s):" in text
    assert "Client error on /predict_direction [POST]: 400" in text
    assert "Traceback" not in text and "ERROR" not in text


@pytest.mark.integration
def test_served_body_limit(keyed_server: Any) -> None:
    url, _ = keyed_server
    huge = b'{"bars": {"date": [' + b'"2018-01-02",' * 300_000 + b'"2018-01-03"]}}'  # ~4 MB, over the 2 MiB set
    code, answer = post(url + "/predict_direction", huge, headers={"X-API-Key": KEYS[0]})
    assert code == 413 and "larger than the limit of 2097152 bytes" in answer["detail"]


@pytest.mark.integration
def test_keys_never_reach_the_bento_or_the_model_store(
    production_models: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_API_KEYS", KEYS[0])
    tag = build(production_models, build_context(tmp_path))
    home = Path(os.environ["BENTOML_HOME"])
    leaked = [
        path
        for path in home.rglob("*")
        if path.is_file() and path.stat().st_size < 50 * 2**20 and KEYS[0].encode() in path.read_bytes()
    ]
    assert bentoml.bentos.get(tag) and leaked == []


def test_the_log_filter_keeps_server_errors_whole() -> None:
    import logging

    from bentos.client_errors import ClientErrorLogFilter
    from bentos.schemas import BadInput

    def record(error: BaseException) -> logging.LogRecord:
        try:
            raise error
        except BaseException:
            import sys

            return logging.LogRecord(
                "x", logging.ERROR, __file__, 1, "Exception on %s [%s]", ("/m", "POST"), sys.exc_info()
            )

    client = record(BadInput("bars: row 3 is wrong\nmore"))
    assert ClientErrorLogFilter().filter(client)
    assert (client.levelname, client.exc_info) == ("WARNING", None)
    assert client.getMessage() == "Client error on /m [POST]: 422 bars: row 3 is wrong"
    server = record(RuntimeError("boom"))
    assert ClientErrorLogFilter().filter(server)
    assert server.levelname == "ERROR" and server.exc_info is not None
