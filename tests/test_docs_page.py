"""The API docs page at ``/`` (BentoML's Swagger UI over the served ``/docs.json``), as a browser renders it.

Swagger UI reads ``/docs.json`` with a YAML parser, which refuses a key given twice ("Parser error: duplicated mapping
key") where Python's json keeps the last one: the document is checked with a parser that refuses duplicates, and the
page is loaded in a real headless Chromium (Debian's package, driven over the DevTools protocol with the
``websockets`` client the project's dependencies bring), offline: every host but the service's is unresolvable, and
BentoML serves Swagger UI's scripts and styles itself. The page must list every API method, with its examples (a
window as columns and as a list of bar objects) and its error answers.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bentos.schemas import ERROR_ANSWERS, error_schemas
from deploy.smoke import stop
from tests.integration_helpers import free_port, served

pytestmark = pytest.mark.integration

#: the methods whose request is a window of bars (all but ``models``) and the example names each shows
WINDOW_EXAMPLES = ("columns", "records")


@pytest.fixture(scope="module")
def service_url(production_models: dict[str, str]) -> Iterator[str]:
    with served("bentos.service:MarketModels") as url:
        yield url


@pytest.fixture(scope="module")
def api_methods(production_models: dict[str, str]) -> list[str]:
    return sorted(importlib.import_module("bentos.service").MarketModels.apis)


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses an object with a key given twice, as Swagger UI's parser does."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"duplicated keys {repeated} in an object with keys {keys}")
    return dict(pairs)


def test_served_docs_json_has_no_duplicate_keys(service_url: str, api_methods: list[str]) -> None:
    text = httpx.get(f"{service_url}/docs.json", timeout=30).text
    document = json.loads(text, object_pairs_hook=unique_keys)
    problem = {"$ref": "#/components/schemas/Problem"}
    for name in api_methods:
        responses = document["paths"][f"/{name}"]["post"]["responses"]
        errors = {code: answer for code, answer in responses.items() if code.startswith("4")}
        assert sorted(errors) == sorted(str(code) for code in ERROR_ANSWERS), (name, sorted(responses))
        for code, answer in errors.items():
            assert answer["content"] == {"application/problem+json": {"schema": problem}}, (name, code)
    assert document["components"]["schemas"]["Problem"] == error_schemas()["Problem"]  # the one error schema


def test_swagger_ui_is_served_by_the_service_itself(service_url: str) -> None:
    """The page's scripts and styles come from the service (an offline machine renders it too)."""
    page = httpx.get(f"{service_url}/", timeout=30).text
    local = [src for src in _assets(page) if not src.startswith(("http:", "https:", "//"))]
    assert any(src.endswith("swagger-ui-bundle.js") for src in local), local
    for src in local:
        assert httpx.get(f"{service_url}/{src.removeprefix('./')}", timeout=30).status_code == 200, src


def _assets(page: str) -> list[str]:
    import re

    return re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)


# ---- a real browser ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium: installed with apt-get when missing and this user may (root), else the test is skipped."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("Chromium is not installed and this user cannot install it (as root: apt-get install chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            pytest.skip(f"could not install Chromium ({' '.join(command)}): {result.stderr.strip()[-500:]}")
    return shutil.which("chromium") or pytest.skip("apt-get installed chromium, but it is not on PATH")


class DevTools:
    """One page of a headless Chromium, driven over the DevTools protocol (commands and their results only)."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self._ids = itertools.count(1)
        self._socket = connect(url, max_size=2**26, open_timeout=30)

    def close(self) -> None:
        self._socket.close()

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:  # events come in between; the answer carries the command's id
            message = json.loads(self._socket.recv(timeout=60))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message["result"])

    def evaluate(self, expression: str) -> Any:
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:200]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of ``expression`` once truthy, polled; fails with its last value after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                assert value, f"still false after {timeout:.0f} s: {expression[:300]}"
                return value
            time.sleep(0.2)


@contextlib.contextmanager
def browser_page(chromium: str) -> Iterator[DevTools]:
    """A blank page in a fresh headless Chromium that resolves no host but this machine."""
    port = free_port()
    # chromium's helper processes may still write the profile as it is removed: leftovers are not a test failure
    with tempfile.TemporaryDirectory(prefix="chromium-profile-", ignore_cleanup_errors=True) as profile:
        process = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",  # root in a container
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # offline: e.g. the page's tag manager
                f"--remote-debugging-port={port}",
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                    page = next(t for t in targets if t["type"] == "page")
                    break
                except (httpx.TransportError, StopIteration):
                    assert process.poll() is None, f"chromium exited with {process.returncode}"
                    assert time.monotonic() < deadline, "chromium's DevTools did not answer within 60 s"
                    time.sleep(0.2)
            tools = DevTools(page["webSocketDebuggerUrl"])
            try:
                yield tools
            finally:
                tools.close()
        finally:
            stop(process)


OPERATIONS_JS = """Array.from(document.querySelectorAll('.opblock')).map(block => ({
    path: (block.querySelector('.opblock-summary-path') || {}).innerText,
    examples: Array.from(block.querySelectorAll('.opblock-section-request-body .examples-select option'))
        .map(option => option.value),
    body: (block.querySelector('.opblock-section-request-body .highlight-code') || {}).textContent || '',
    responses: Array.from(block.querySelectorAll('.responses-table .response')).map(row => ({
        code: (row.querySelector('.response-col_status') || {}).innerText.trim(),
        text: row.innerText})),
}))"""


def test_the_docs_page_renders_every_method_with_its_examples(
    service_url: str, api_methods: list[str], chromium: str
) -> None:
    with browser_page(chromium) as page:
        page.command("Page.navigate", url=f"{service_url}/")
        rendered = page.wait_for(
            "document.querySelectorAll('.opblock').length > 0"
            " || document.querySelectorAll('.errors-wrapper').length > 0"
            " || (document.body !== null && document.body.innerText.includes('Parser error'))"
        )
        text = page.evaluate("document.body.innerText")
        assert rendered and "Parser error" not in text, text[:2000]
        assert page.evaluate("document.querySelectorAll('.errors-wrapper').length") == 0, text[:2000]

        page.evaluate("document.querySelectorAll('.opblock-summary-control').forEach(button => button.click())")
        windowed = [name for name in api_methods if name != "models"]
        # every method that takes a window shows both examples, the columns one first
        page.wait_for(
            f"({OPERATIONS_JS}).filter(o => o.examples.length === 2 && o.body.includes('2018-12-31')).length "
            f">= {len(windowed)}"
        )
        operations = {o["path"]: o for o in page.evaluate(OPERATIONS_JS)}
        assert {f"/{name}" for name in api_methods} <= set(operations), sorted(operations)
        for name in api_methods:
            operation = operations[f"/{name}"]
            codes = [r["code"] for r in operation["responses"]]
            assert {"200", *(str(code) for code in ERROR_ANSWERS)} <= set(codes), (name, codes)
            problem = next(r["text"] for r in operation["responses"] if r["code"] == "422")
            assert "application/problem+json" in problem and '"errors"' in problem, (name, problem[:500])
            if name == "models":
                continue
            assert operation["examples"] == list(WINDOW_EXAMPLES), (name, operation["examples"])
            shown = json.loads(operation["body"])
            window = shown["windows"][0] if name == "predict_all_batch" else shown["bars"]
            assert window["date"][-1] == "2018-12-31" and len(window["close"]) == 260, name

        # the other example: the same window as a list of bar objects
        page.evaluate(
            "document.querySelectorAll('.opblock-section-request-body .examples-select select').forEach(select => {"
            "select.value = 'records'; select.dispatchEvent(new Event('change', {bubbles: true})); })"
        )
        page.wait_for(
            f"({OPERATIONS_JS}).filter(o => o.body.includes('\"close\": 2506.850098')).length >= {len(windowed)}"
        )
        for name in windowed:
            shown = json.loads(next(o for o in page.evaluate(OPERATIONS_JS) if o["path"] == f"/{name}")["body"])
            bars = shown["windows"][0] if name == "predict_all_batch" else shown["bars"]
            assert isinstance(bars, list) and len(bars) == 260, name
            assert bars[-1]["date"] == "2018-12-31" and set(bars[-1]) == {
                "date",
                "open",
                "high",
                "low",
                "close",
                "volume",
            }, name
