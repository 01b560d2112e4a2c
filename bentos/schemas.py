"""Request and response schemas of the service (pydantic), with the examples the OpenAPI docs show, the errors bad
requests get, and the OpenAPI document as the service really is. Light to import: ``bentoml serve``'s supervisor
process imports it (see ``bentos.service``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Tag, with_config
from typing_extensions import TypeAliasType, TypedDict

from bentos.client_errors import PROBLEM_MEDIA_TYPE, WINDOW_FORMS, ClientError
from bentos.settings import PACKAGE_DIR

EXAMPLE_FILE = PACKAGE_DIR / "examples" / "sp500_window.json"


@cache
def _example_text() -> str:
    return EXAMPLE_FILE.read_text()


def example_window() -> dict[str, Any]:
    """The last 260 daily bars of the S&P 500 in 2018 (real data bundled with arch), as a request holds them.

    A fresh copy each call: callers change it (tests make bad windows from it).
    """
    return dict(json.loads(_example_text()))


def example_records() -> list[dict[str, Any]]:
    """:func:`example_window` as a list of bar objects (``DataFrame.to_dict("records")``)."""
    window = example_window()
    return [dict(zip(window, bar, strict=True)) for bar in zip(*window.values(), strict=True)]


#: A JSON number, never a string or a boolean that looks like one: ``"101.5"`` and ``true`` get 400 like any wrong type.
#: NaN and infinities (``NaN``, ``Infinity``, ``1e999``) still parse, so the OHLCV contract names their rows (422).
Number = Annotated[float, Field(strict=True)]


class BarWindow(BaseModel):
    """Daily OHLCV bars of one symbol, oldest first, as columns of equal length (``DataFrame.to_dict("list")``).

    At least the models' lookback + 1 bars (252); dates strictly increasing; prices finite and > 0;
    volume finite and >= 0; high >= max(open, close); low <= min(open, close).
    """

    # BentoML's OpenAPI takes one "example" (not "examples"): 260 real S&P 500 bars, so "Try it out" works
    model_config = ConfigDict(json_schema_extra={"example": example_window()})

    date: list[str] = Field(description="Trading dates, ISO 8601 (YYYY-MM-DD).")
    open: list[Number]
    high: list[Number]
    low: list[Number]
    close: list[Number]
    volume: list[Number]


@with_config(ConfigDict(title="Bar", json_schema_extra={"example": example_records()[-1]}))
class Bar(TypedDict):
    """One daily bar, a row of ``DataFrame.to_dict("records")`` (other keys, e.g. ``symbol``, are ignored)."""

    date: Annotated[str, Field(description="Trading date, ISO 8601 (YYYY-MM-DD).")]
    open: Number
    high: Number
    low: Number
    close: Number
    volume: Number


#: A window of bars, in either form: columns (the fast path: pydantic reads six lists straight from the JSON) or a
#: list of bar objects. Validated bars are the same whichever form they came in, and so are the OHLCV contract's
#: messages. The union is tried left to right, without a discriminator: a callable one would have pydantic build the
#: request's Python objects before validating them (+50 % on parsing a 260-bar window, measured), and a JSON object
#: fails the list at once. Pydantic's errors then name the form (``["bars", "columns", "close", 4]``) and come for
#: both forms; ``bentos.client_errors.field_errors`` keeps those of the form that was sent. A named alias: BentoML 1.4
#: re-annotates a union inside ``Window | None`` and ``list[Window]`` otherwise, and the OpenAPI document gets one
#: ``Window`` schema that every method references.


def _one_of(schema: dict[str, Any]) -> None:
    """The forms exclude each other (an object, an array): JSON Schema's ``oneOf``, not pydantic's ``anyOf``, which
    BentoML's ``/schema.json`` flattens to its first option (its client would then send a list of bars as ``{}``)."""
    schema["oneOf"] = schema.pop("anyOf")


Window = TypeAliasType(
    "Window",
    Annotated[
        Annotated[BarWindow, Tag(WINDOW_FORMS[0])] | Annotated[list[Bar], Tag(WINDOW_FORMS[1])],
        Field(
            union_mode="left_to_right",
            json_schema_extra=_one_of,
            description="Daily OHLCV bars of one symbol, oldest first: an object of columns of equal length "
            '(`DataFrame.to_dict("list")`) or a list of bar objects (`DataFrame.to_dict("records")`).',
        ),
    ],
)


class BadInput(ClientError):
    """The request is well-formed JSON of the right shape but breaks the OHLCV contract or a limit (422)."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY
    kind = "ohlcv-contract"


class PayloadTooLarge(ClientError):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    kind = "too-large"


class UnknownSymbol(ClientError):
    error_code = HTTPStatus.NOT_FOUND
    kind = "unknown-symbol"


class ModelRef(BaseModel):
    """The served model an answer comes from, and whether its walk-forward evaluation showed skill."""

    name: str
    version: str
    skill_shown: bool | None = Field(
        None,
        description="Whether the model beat its baseline in walk-forward evaluation (its card's skill record); "
        "null when the card has none (the regime model, models trained before skill was recorded).",
    )
    skill_note: str | None = Field(None, description="The card's statement of that skill, in words.")


def model_ref(name: str, version: str, card: Mapping[str, Any]) -> ModelRef:
    """The reference to a served model every answer carries, with the skill record of its card (if any)."""
    skill = card.get("skill")
    shown = note = None
    if isinstance(skill, Mapping):
        shown = skill.get("shown") if isinstance(skill.get("shown"), bool) else None
        note = skill.get("statement") if isinstance(skill.get("statement"), str) else None
    return ModelRef(name=name, version=version, skill_shown=shown, skill_note=note)


class ReturnPrediction(BaseModel):
    as_of: str = Field(description="Date of the last bar: the prediction uses bars up to and including it.")
    horizon_days: int
    expected_log_return: float = Field(description="Predicted log return from the last close over the horizon.")
    model: ModelRef


class DirectionPrediction(BaseModel):
    as_of: str
    horizon_days: int
    probability_up: float = Field(description="Calibrated probability that the next close is above the last.")
    direction: Literal["up", "down"]
    threshold: float = Field(description="probability_up at or above which the direction is 'up'.")
    model: ModelRef


class VolatilityPrediction(BaseModel):
    as_of: str
    horizon_days: int
    annualized_volatility: float = Field(description="Realized volatility expected over the horizon, annualised.")
    model: ModelRef


class RegimePrediction(BaseModel):
    as_of: str
    regime: str
    probabilities: dict[str, float] = Field(description="Filtered probability of each regime at the last bar.")
    expected_duration_days: float = Field(description="Expected length of a stay in this regime.")
    model: ModelRef


class ForecastPoint(BaseModel):
    date: str
    price: float
    lower: float
    upper: float


class PriceForecast(BaseModel):
    symbol: str
    anchor_date: str = Field(description="The last observed bar the forecast is anchored to.")
    anchor_close: float
    interval_width: float = Field(
        description="Nominal level of the [lower, upper] intervals: split-conformal, calibrated on the model's "
        "walk-forward errors and scaled by the anchor's EWMA volatility (the card records their coverage)."
    )
    forecast: list[ForecastPoint]
    model: ModelRef


class AllPredictions(BaseModel):
    as_of: str
    return_lightgbm: ReturnPrediction
    return_random_forest: ReturnPrediction
    direction: DirectionPrediction
    volatility: VolatilityPrediction
    regime: RegimePrediction


#: The optional symbol a client names its window with: recorded with the answer, so the live loop can score it.
Symbol = Annotated[
    str | None,
    Field(
        max_length=32,
        pattern=r"^[^\x00-\x1f\x7f]*$",
        description="The window's symbol (recorded for the live scorecard; no control characters).",
    ),
]


class ModelCardOut(BaseModel):
    name: str
    version: str
    card: dict[str, Any]


# ---- the error answers ------------------------------------------------------------------------------------------


class ProblemItem(BaseModel):
    """One wrong thing in a request: where, which rule it breaks, and what is wrong."""

    loc: list[str | int] = Field(
        description='Where in the request body: a field path (`["bars", "close", 4]`, `["periods"]`); for '
        'a rule of the OHLCV contract, the window and the column (`["windows", 2, "low"]`), whichever form '
        "its bars came in. Empty when the problem is not about one field."
    )
    row: int | None = Field(description="The bar (0 = the window's first) when the problem is about one; else null.")
    rule: str = Field(
        description="The rule broken: one of the OHLCV contract's (`price_not_positive`, `date_unsorted`, ...), "
        "pydantic's error type (`float_type`, `missing`, ...), or the service's (`too_many_bars`, ...)."
    )
    message: str = Field(description="What is wrong, in words.")


class Problem(BaseModel):
    """Every 4xx answer (RFC 9457 problem details, served as `application/problem+json`)."""

    model_config = ConfigDict(title="Problem")

    type: str = Field(
        description="The kind of problem: a tag URI (`tag:mlops-finance,2026:problems/ohlcv-contract`), stable, "
        "not meant to be fetched; `about:blank` for a plain HTTP error (then `title` is the status phrase)."
    )
    title: str = Field(description="The kind of problem in words, the same for every problem of the type.")
    status: int = Field(description="The HTTP status of the answer.")
    detail: str = Field(description="What is wrong with this request, and what to do.")
    errors: list[ProblemItem] = Field(description="Each wrong thing, where there are such (else empty).")


ERROR_ANSWERS: dict[int, str] = {
    400: "Malformed JSON, or fields missing or of the wrong type: pydantic's errors with their field paths.",
    401: "Missing or invalid API key (only when the service is configured with keys).",
    404: "Unknown symbol: the message lists the symbols the price model knows.",
    413: "Too many bars in a window or windows in a call, or a body over the size limit.",
    415: "A media type the API does not take: send the request body as JSON.",
    422: "Bars that break the OHLCV contract (every broken row and rule), or that the models cannot use.",
}
#: BentoML's own error bodies, which the service never answers with (``bentos.client_errors``)
BENTOML_ERROR_COMPONENTS = ("InvalidArgument", "NotFound")
REF = "#/components/schemas/{model}"


def _openapi30(schema: Any) -> Any:
    """``schema`` (changed in place) with pydantic's ``anyOf: [X, {"type": "null"}]`` written as OpenAPI 3.0's
    ``nullable`` (BentoML declares 3.0.2, which has no null type)."""
    if isinstance(schema, list):
        for value in schema:
            _openapi30(value)
    elif isinstance(schema, dict):
        for value in schema.values():
            _openapi30(value)
        options = schema.get("anyOf")
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            del schema["anyOf"]
            only = rest[0] if len(rest) == 1 else {"anyOf": rest}
            schema.update({"allOf": [only]} if "$ref" in only else only)
            schema["nullable"] = True
    return schema


def error_schemas() -> dict[str, Any]:
    """The component schemas of the error answers' bodies (OpenAPI `#/components/schemas/...`)."""
    schema = Problem.model_json_schema(ref_template=REF)
    components = dict(schema.pop("$defs"))
    return _openapi30({"Problem": schema, **components})


def error_answer(code: int) -> dict[str, Any]:
    """The OpenAPI response object of an error status of :data:`ERROR_ANSWERS`: a :class:`Problem`."""
    schema = {"$ref": REF.format(model="Problem")}
    return {"description": ERROR_ANSWERS[code], "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}}}


def request_examples() -> dict[str, Any]:
    """Named request examples (``#/components/examples/...``): a window of real bars in each form."""
    forms = {
        "columns": ("as columns", example_window()),
        "records": ("as a list of bar objects", example_records()),
    }
    examples = {}
    for form, (words, window) in forms.items():
        examples[f"bars_{form}"] = {"summary": f"260 S&P 500 bars {words}", "value": {"bars": window}}
        examples[f"windows_{form}"] = {"summary": f"one window of bars {words}", "value": {"windows": [window]}}
    return examples


def _takes(parameter: dict[str, Any]) -> str | None:
    """Which window examples a request parameter takes: ``bars`` (a window), ``windows`` (a list), or None."""
    text = json.dumps(parameter)
    if REF.format(model="Window") not in text:
        return None
    return "windows" if parameter.get("type") == "array" else "bars"


def corrected_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI document of this service as BentoML 1.4.40 renders it (``/docs.json``), corrected where it describes
    the service wrongly; changed in place and returned (correcting twice changes nothing).

    Every API method declares the error answers it really gives (:data:`ERROR_ANSWERS`, each a :class:`Problem`) in
    place of BentoML's 400 and 404 (keys are strings: BentoML's integers would be duplicate keys in the JSON text);
    a method that takes bars shows a request example of each form; a parameter whose default is None accepts null;
    and no schema uses the ``null`` type OpenAPI 3.0 lacks.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(error_schemas())
    document["components"].setdefault("examples", {}).update(request_examples())
    for item in document["paths"].values():
        operation = item.get("post")
        if not operation or "x-bentoml-name" not in operation:
            continue
        responses = operation["responses"]
        for code in list(responses):
            if 400 <= int(code) < 500:
                del responses[code]
        responses.update({str(code): error_answer(code) for code in ERROR_ANSWERS})
        for media in operation.get("requestBody", {}).get("content", {}).values():
            properties = media["schema"].get("properties", {})
            for parameter in properties.values():
                if "default" in parameter and parameter["default"] is None:
                    if "$ref" in parameter:
                        parameter["allOf"] = [{"$ref": parameter.pop("$ref")}]
                    parameter["nullable"] = True
            takes = {_takes(parameter) for parameter in properties.values()} - {None}
            if takes:
                (kind,) = takes
                media.pop("example", None)
                media["examples"] = {
                    form: {"$ref": f"#/components/examples/{kind}_{form}"} for form in ("columns", "records")
                }
    used = json.dumps(document["paths"])
    for name in BENTOML_ERROR_COMPONENTS:
        if REF.format(model=name) not in used:
            schemas.pop(name, None)
    _openapi30(document)
    return document


class CorrectedDocs:
    """ASGI middleware: ``GET /docs.json`` (the Swagger UI's source) answers BentoML's OpenAPI document corrected by
    :func:`corrected_openapi`, computed once per worker. Other requests pass at the cost of one comparison.

    BentoML 1.4 has no hook for its OpenAPI document (``Service.openapi_spec`` is a property of the class): this
    serves the corrected one with the public ``Service.add_asgi_middleware`` instead. A built Bento's
    ``apis/openapi.yaml`` keeps BentoML's own (nothing here reads it).
    """

    def __init__(self, app: Any, path: str = "/docs.json") -> None:
        self.app = app
        self.path = path
        self._body: bytes | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        if self._body is None:
            answer: list[Any] = []

            async def keep(message: Any) -> None:
                answer.append(message)

            await self.app({**scope, "method": "GET"}, receive, keep)
            if answer[0]["status"] != 200:
                for message in answer:
                    await send(message)
                return
            document = json.loads(b"".join(m.get("body", b"") for m in answer[1:]))
            self._body = json.dumps(corrected_openapi(document)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self._body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self._body if scope["method"] == "GET" else b""})
