"""Hostile inputs, sent over real HTTP to a real ``bentoml serve``: each gets the 4xx it should, saying what is wrong.

The corpus is data (``CORPUS``): what is sent, to which method, the status expected and the words the answer must
contain (the field, row or rule at fault). 400: the body is not JSON of the documented shape and types (pydantic's
errors, with field paths); 422: the bars break the OHLCV contract or cannot be used by the models; 413: a limit;
404: an unknown symbol (or path); 405, 415: a method or media type the API does not take. Never a 5xx. Every answer is
one problem-details body (``bentos.schemas.Problem``, ``application/problem+json``), whatever the cause, and a
window's bars break the contract with the same message whether they came as columns or as a list of bar objects.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema
import numpy as np
import pandas as pd
import pytest

from bentos.schemas import Problem, example_records, example_window
from tests.integration_helpers import post, served

pytestmark = pytest.mark.integration

Body = bytes | str | dict[str, Any]


def bars(**changes: Any) -> dict[str, list[Any]]:
    """The 260 real S&P 500 bars of the documented example, with some columns replaced."""
    return {**{k: list(v) for k, v in example_window().items()}, **changes}


def changed(column: str, row: int, value: Any) -> dict[str, list[Any]]:
    values = list(example_window()[column])
    values[row] = value
    return bars(**{column: values})


def good() -> dict[str, Any]:
    """A request for the example window: 260 real bars."""
    return {"bars": bars()}


def bad(column: str, row: int, value: Any) -> dict[str, Any]:
    """A request for the example window with one value replaced."""
    return {"bars": changed(column, row, value)}


def literal(column: str, row: int, token: str) -> str:
    """A request whose JSON holds ``token`` (``NaN``, ``Infinity``, ...) verbatim at one value."""
    marker = 123456.789
    return json.dumps(bad(column, row, marker)).replace(str(marker), token, 1)


def as_records(request: dict[str, Any]) -> dict[str, Any]:
    """The request with its window as a list of bar objects (``DataFrame.to_dict("records")``)."""
    columns = request["bars"]
    return {**request, "bars": [dict(zip(columns, bar, strict=True)) for bar in zip(*columns.values(), strict=True)]}


def bad_record(row: int, column: str, value: Any) -> dict[str, Any]:
    rows = example_records()
    rows[row] = {**rows[row], column: value}
    return {"bars": rows}


def first(n: int) -> dict[str, Any]:
    return {"bars": {k: v[:n] for k, v in example_window().items()}}


def business_days(n: int, start: str = "1990-01-02", end: str | None = None) -> list[str]:
    days = pd.bdate_range(end=end, periods=n) if end else pd.bdate_range(start, periods=n)
    return [str(d.date()) for d in days]


def long_window(n: int) -> dict[str, Any]:
    """``n`` valid-looking bars: the example's prices repeated under consecutive business days."""
    data = example_window()
    return {"bars": {"date": business_days(n), **{k: (data[k] * (n // 260 + 1))[:n] for k in data if k != "date"}}}


def prices(make: Callable[[int], float], **fields: Any) -> dict[str, Any]:
    """A request for the example window with open, high, low and close all set to ``make(row)``."""
    return {"bars": bars(**{k: [make(i) for i in range(260)] for k in ("open", "high", "low", "close")}), **fields}


def without(column: str) -> dict[str, Any]:
    return {"bars": {k: v for k, v in bars().items() if k != column}}


def nested(depth: int, inside: str = "") -> str:
    """JSON nested ``depth`` lists deep, under ``bars`` (or under ``bars.<inside>``)."""
    lists = "[" * depth + "]" * depth
    return f'{{"bars": {{"{inside}": {lists}}}}}' if inside else f'{{"bars": {lists}}}'


def swapped_dates() -> dict[str, Any]:
    dates = list(example_window()["date"])
    dates[10], dates[11] = dates[11], dates[10]
    return {"bars": bars(date=dates)}


def ending(date: str) -> dict[str, Any]:
    """A 260-period forecast anchored on the example's bars redated to end on ``date``."""
    return {"periods": 260, "bars": bars(date=business_days(260, end=date))}


def windows(*requests: dict[str, Any], count: int = 1) -> dict[str, Any]:
    """A batch of the windows of ``requests``, ``count`` times over."""
    return {"windows": [request["bars"] for request in requests] * count}


def constant(row: int) -> float:
    return 100.0


def extreme(row: int) -> float:
    return 1e-300 if row % 2 else 1e300


BEYOND = "window ending 2018-12-31|beyond what the models take"


@dataclass(frozen=True)
class Hostile:
    label: str
    method: str
    body: Callable[[], Body]  # built when the case runs: the corpus stays cheap to collect
    status: int
    says: str  # words the answer must contain, separated by "|"
    content_type: str = "application/json"


ROWS: list[tuple[Any, ...]] = [
    # numbers that are not finite, and things that are not numbers
    ("NaN", "predict_volatility", lambda: literal("close", 5, "NaN"), 422, "row 5|close=nan|not_finite"),
    ("Infinity", "predict_direction", lambda: literal("high", 7, "Infinity"), 422, "row 7|not_finite"),
    ("-Infinity volume", "predict_all", lambda: literal("volume", 3, "-Infinity"), 422, "row 3|not_finite"),
    ("1e999 overflows", "predict_direction", lambda: literal("close", 9, "1e999"), 422, "row 9|not_finite"),
    ("string for a number", "predict_direction", lambda: bad("close", 4, "x"), 400, '"close", 4|float_type'),
    ("numeric string", "predict_direction", lambda: bad("open", 2, "2690.5"), 400, '"open", 2|float_type'),
    ("boolean volume", "predict_direction", lambda: bad("volume", 0, True), 400, '"volume", 0|float_type'),
    ("null price", "predict_direction", lambda: bad("low", 1, None), 400, '"low", 1|float_type'),
    ("number for a date", "predict_direction", lambda: bad("date", 6, 20180101), 400, '"date", 6|string_type'),
    # prices and volumes the contract forbids
    ("negative price", "predict_volatility", lambda: bad("low", 9, -5.0), 422, "row 9|low=-5.0|price_not_positive"),
    ("zero price", "predict_return", lambda: bad("open", 17, 0.0), 422, "row 17|open=0.0|price_not_positive"),
    ("negative volume", "detect_regime", lambda: bad("volume", 20, -1.0), 422, "row 20|volume_negative"),
    ("high below low", "predict_all", lambda: bad("high", 30, 100.0), 422, "row 30|high=100.0|high_below_open"),
    ("low above high", "predict_direction", lambda: bad("low", 31, 1e6), 422, "row 31|low_above_open_close"),
    # dates
    ("duplicate date", "predict_direction", lambda: bad("date", 20, "2018-01-17"), 422, "row 20|date_duplicate"),
    ("unsorted dates", "predict_direction", swapped_dates, 422, "row 11|date_unsorted"),
    ("impossible date", "predict_direction", lambda: bad("date", 30, "2018-02-30"), 422, "row 30|date_invalid"),
    ("window ending in 9999", "forecast_price", lambda: ending("9999-12-31"), 422, "9999-12-31|date_out_of_range"),
    # how many bars and windows
    ("one bar", "predict_direction", lambda: first(1), 422, "1 bars given, at least 252"),
    ("one bar short", "predict_all", lambda: first(251), 422, "251 bars given, at least 252"),
    ("no bars", "detect_regime", lambda: first(0), 422, "0 bars given"),
    ("ragged columns", "predict_all", lambda: {"bars": bars(volume=[1.0] * 259)}, 422, "same length|volume=259"),
    ("one bar over the limit", "predict_direction", lambda: long_window(5001), 413, "5001 bars given|at most 5000"),
    ("too many windows", "predict_all_batch", lambda: windows(first(252), count=257), 413, "257 given|at most 256"),
    ("bad second window", "predict_all_batch", lambda: windows(good(), bad("low", 3, -1.0)), 422, "windows[1]|row 3"),
    # windows the contract allows but the models cannot use
    ("constant prices", "detect_regime", lambda: prices(constant), 422, "window ending 2018-12-31|log(rv_21)"),
    ("constant prices, all models", "predict_all", lambda: prices(constant), 422, "log(rv_21)"),
    ("prices 1e-300 to 1e300", "predict_return", lambda: prices(extreme, model="random_forest"), 422, BEYOND),
    ("prices 1e-300 to 1e300, all models", "predict_all", lambda: prices(extreme), 422, BEYOND),
    # not the documented shape
    ("empty body", "predict_direction", lambda: b"", 400, "bars|missing"),
    ("empty object", "predict_volatility", lambda: {}, 400, "bars|missing"),
    ("missing column", "predict_direction", lambda: without("volume"), 400, "volume|missing"),
    ("not JSON", "predict_direction", lambda: "{not json", 400, "json_invalid"),
    ("a JSON array", "predict_all", lambda: "[1, 2, 3]", 400, "model_type"),
    ("deeply nested JSON", "predict_direction", lambda: nested(100_000), 400, "recursion limit"),
    ("nested lists as dates", "predict_direction", lambda: nested(40, inside="date"), 400, '"date", 0|string_type'),
    ("wrong content type", "predict_direction", lambda: "bars=1", 400, "json_invalid", "text/plain"),
    ("XML", "predict_direction", lambda: "<bars><close>1</close></bars>", 400, "json_invalid", "application/xml"),
    ("unknown model", "predict_return", lambda: {**good(), "model": "xgboost"}, 400, "model|literal_error"),
    ("zero periods", "forecast_price", lambda: {"periods": 0}, 400, "periods|greater_than_equal"),
    ("too many periods", "forecast_price", lambda: {"periods": 261}, 400, "periods|less_than_equal"),
    ("unknown symbol", "forecast_price", lambda: {"symbol": "AAPL"}, 404, "AAPL|^GSPC|^IXIC"),
    ("a symbol too long", "predict_direction", lambda: {**good(), "symbol": "X" * 33}, 400, "symbol|string_too_long"),
    ("a NUL in a symbol", "predict_all", lambda: {**good(), "symbol": "A\x00B"}, 400, "symbol|string_pattern"),
    (
        "a batch's symbol too long",
        "predict_all_batch",
        lambda: windows(good()) | {"symbols": ["X" * 65]},
        400,
        '"symbols", 0|string_too_long',
    ),
    # windows as a list of bar objects: the same rules, the same messages
    ("records: negative price", "predict_volatility", lambda: as_records(bad("low", 9, -5.0)), 422, "row 9|low=-5.0"),
    ("records: unsorted dates", "detect_regime", lambda: as_records(swapped_dates()), 422, "row 11|date_unsorted"),
    ("records: one bar short", "predict_all", lambda: as_records(first(251)), 422, "251 bars given, at least 252"),
    (
        "records: bad second window",
        "predict_all_batch",
        lambda: windows(good(), as_records(bad("low", 3, -1.0))),
        422,
        "windows[1]|row 3",
    ),
    ("records: string for a number", "predict_direction", lambda: bad_record(4, "close", "x"), 400, '4, "close"|float'),
    (
        "records: missing field",
        "predict_return",
        lambda: {"bars": [{k: v for k, v in r.items() if k != "volume"} for r in example_records()]},
        400,
        '"volume"|missing',
    ),
    ("records: a bar that is not an object", "predict_direction", lambda: {"bars": [1, 2, 3]}, 400, "0|dict_type"),
    ("neither form", "predict_direction", lambda: {"bars": "2018-01-02"}, 400, "window_form|list of bar objects"),
    (
        "forecast anchored on records",
        "forecast_price",
        lambda: as_records(ending("9999-12-31")),
        422,
        "date_out_of_range",
    ),
]
CORPUS = [Hostile(*row) for row in ROWS]

#: Cases the service still answers wrongly, with the fix each needs where this module cannot make it.
KNOWN_BUGS: dict[str, str] = {}  # label -> the bug, for a case marked xfail until it is fixed


def message_of(payload: Any) -> str:
    """The whole error answer as text: the detail and each error with its location, row and rule."""
    return json.dumps(payload) if isinstance(payload, dict) else str(payload)


PROBLEM_SCHEMA = Problem.model_json_schema()  # the source of the served documents' one Problem component


def assert_problem(status: int, content_type: str, payload: Any) -> None:
    """A 4xx answer is one problem-details body, with the same fields whatever the cause."""
    assert content_type == "application/problem+json", content_type
    jsonschema.validate(payload, PROBLEM_SCHEMA)
    assert set(payload) == set(Problem.model_fields), sorted(payload)
    assert payload["status"] == status and payload["detail"].strip() and payload["title"].strip()


@pytest.fixture(scope="module")
def service_url(production_models: dict[str, str]) -> Iterator[str]:
    with served("bentos.service:MarketModels") as url:
        yield url


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.label, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[c.label])])
        if c.label in KNOWN_BUGS
        else pytest.param(c, id=c.label)
        for c in CORPUS
    ],
)
def test_hostile_input_gets_a_4xx_naming_the_problem(service_url: str, case: Hostile) -> None:
    body = case.body()
    data = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
    answer = httpx.post(
        f"{service_url}/{case.method}", content=data, headers={"Content-Type": case.content_type}, timeout=60
    )
    payload = answer.json()
    message = message_of(payload)
    assert answer.status_code == case.status, (answer.status_code, message[:1000])
    missing = [word for word in case.says.split("|") if word not in message]
    assert not missing, (missing, message[:1000])
    assert_problem(case.status, answer.headers["content-type"], payload)


def test_a_bad_window_gets_the_same_answer_in_either_form(service_url: str) -> None:
    everywhere = ("predict_direction", "detect_regime", "predict_all", "predict_all_batch")
    for request, methods in (
        (bad("low", 9, -5.0), everywhere),
        (swapped_dates(), everywhere),
        (first(100), everywhere),
        (prices(constant), ("detect_regime", "predict_all")),  # the regime model's: no price moves
    ):
        for method in methods:
            if method == "predict_all_batch":
                columns, records = windows(good(), request), windows(good(), as_records(request))
            else:
                columns, records = request, as_records(request)
            answers = post(f"{service_url}/{method}", columns), post(f"{service_url}/{method}", records)
            assert answers[0] == answers[1] and answers[0][0] == 422, (method, answers)


@pytest.mark.parametrize(
    ("method", "path", "content_type", "status"),
    [
        ("GET", "/no_such_method", "application/json", 404),  # Starlette's router
        ("GET", "/predict_direction", "application/json", 405),  # Starlette's router
        ("POST", "/predict_direction", "application/vnd.bentoml+pickle", 415),  # BentoML's own refusal
        ("POST", "/predict_direction", "multipart/form-data", 415),  # the service's form guard
    ],
)
def test_every_other_4xx_is_a_problem_too(
    service_url: str, method: str, path: str, content_type: str, status: int
) -> None:
    answer = httpx.request(method, service_url + path, content=b"{}", headers={"Content-Type": content_type})
    assert answer.status_code == status, answer.text[:500]
    assert_problem(status, answer.headers["content-type"], answer.json())


@pytest.fixture(scope="module")
def million_bars() -> bytes:
    """A window of a million bars as a request body (~50 MB of JSON)."""
    n = 1_000_000
    dates = np.arange(np.datetime64("1800-01-01"), np.datetime64("1800-01-01") + n).astype(str).tolist()
    column = "[" + ", ".join(["100.0"] * n) + "]"  # the same price everywhere: it is never read
    values = ", ".join(f'"{name}": {column}' for name in ("open", "high", "low", "close", "volume"))
    return f'{{"bars": {{"date": {json.dumps(dates)}, {values}}}}}'.encode()


def post_raw(url: str, body: bytes, expect_continue: bool) -> tuple[int, Any]:
    """POST over a plain socket; with ``expect_continue``, as curl sends a large body: the headers first, with
    ``Expect: 100-continue``, and the body only if the server answers ``100 Continue`` (not if it refuses at once)."""
    address = urllib.parse.urlsplit(url)
    head = (
        f"POST {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        + ("Expect: 100-continue\r\n" if expect_continue else "")
        + "\r\n"
    ).encode()
    with socket.create_connection((address.hostname, address.port), timeout=60) as connection:
        connection.sendall(head if expect_continue else head + body)
        reader = connection.makefile("rb")
        status = int(reader.readline().split()[1])
        if status == 100:
            reader.readline()  # the blank line closing the interim answer
            connection.sendall(body)
            status = int(reader.readline().split()[1])
        headers = {}
        while (line := reader.readline().strip()) != b"":
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        payload = reader.read(int(headers.get("content-length", "0")))
    return status, json.loads(payload)


@pytest.mark.parametrize("expect_continue", [True, False], ids=["as curl sends it", "body sent at once"])
def test_a_million_bars_get_413_quickly_and_the_service_lives_on(
    service_url: str, million_bars: bytes, expect_continue: bool
) -> None:
    started = time.monotonic()
    try:
        code, payload = post_raw(f"{service_url}/predict_direction", million_bars, expect_continue)
    except OSError as error:
        pytest.fail(f"no answer, the connection broke after {time.monotonic() - started:.1f} s: {error!r}")
    elapsed = time.monotonic() - started
    assert code == 413, message_of(payload)[:500]
    assert any(word in message_of(payload) for word in ("at most", "limit")), message_of(payload)[:500]
    assert payload["status"] == 413 and payload["type"] == "tag:mlops-finance,2026:problems/too-large"
    assert elapsed < 30, f"413 after {elapsed:.1f} s"
    code, answer = post(f"{service_url}/predict_direction", {"bars": example_window()})
    assert code == 200 and answer["as_of"] == "2018-12-31"


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "multipart/form-data; boundary=xyz", "application/x-www-form-urlencoded"]
)
def test_form_bodies_are_refused(service_url: str, content_type: str) -> None:
    code, payload = post(f"{service_url}/predict_direction", json.dumps({"bars": example_window()}), content_type)
    assert code == 415, message_of(payload)[:500]
    assert "application/json" in message_of(payload)
