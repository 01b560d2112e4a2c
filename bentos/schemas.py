"""Request and response schemas of the service (pydantic), with the examples the OpenAPI docs show, and the
errors bad requests get. Light to import: ``bentoml serve``'s supervisor process imports it (see ``bentos.service``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any, Literal

from bentoml.exceptions import BentoMLException
from pydantic import BaseModel, ConfigDict, Field

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


class BadInput(BentoMLException):
    """The request is well-formed JSON of the right shape but breaks the OHLCV contract or a limit (422)."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class ModelRef(BaseModel):
    name: str
    version: str


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
    interval_width: float
    forecast: list[ForecastPoint]
    model: ModelRef


class AllPredictions(BaseModel):
    as_of: str
    return_lightgbm: ReturnPrediction
    return_random_forest: ReturnPrediction
    direction: DirectionPrediction
    volatility: VolatilityPrediction
    regime: RegimePrediction


class ModelCardOut(BaseModel):
    name: str
    version: str
    card: dict[str, Any]


# ---- the error answers, as they really are on the wire -----------------------------------------------------
# BentoML 1.4.40 declares 400, 404 and 500 on every method, each as {"error": str, "detail": str}, whatever the
# service raises. What a client really gets: 400 (pydantic could not read the request) with ``detail`` a list of
# pydantic's errors; for the service's own errors (BadInput 422, PayloadTooLarge 413, UnknownSymbol 404, and
# BentoML's 415 for a pickle body) the message wrapped in a one-element list (``[{"error": ...}]``); and a plain
# object from the middleware in front of the service (the body limit's 413, the form guard's 415 below).


class ErrorMessage(BaseModel):
    """An error answer: what is wrong and where (field, row and rule, or the limit), and what to do."""

    error: str


class FieldError(BaseModel):
    """One of pydantic's errors: the path to the wrong field (``["bars", "close", 3]``) and what is wrong."""

    type: str
    loc: list[str | int]
    msg: str
    url: str = ""


class MalformedRequest(BaseModel):
    """400: the body is not JSON, or not of the documented shape and types."""

    error: str = Field(description="How many errors were found, e.g. '2 validation errors for Input'.")
    detail: list[FieldError] = Field(default_factory=list, description="Each wrong field: where and why.")


ERROR_ANSWERS: dict[int, str] = {
    400: "Malformed JSON, or fields missing or of the wrong type: pydantic's errors with their field paths.",
    404: "Unknown symbol: the message lists the symbols the price model knows.",
    413: "Too many bars in a window or windows in a call, or a body over the size limit.",
    415: "A media type the API does not take: send the request body as JSON.",
    422: "Bars that break the OHLCV contract (every broken row and rule), or that the models cannot use.",
}


def error_schemas() -> dict[str, Any]:
    """The component schemas of the error answers' bodies (OpenAPI `#/components/schemas/...`)."""
    schema = MalformedRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = dict(schema.pop("$defs"))
    return {"MalformedRequest": schema, "ErrorMessage": ErrorMessage.model_json_schema(), **components}


def error_answer(code: int) -> dict[str, Any]:
    """The OpenAPI response object of an error status of :data:`ERROR_ANSWERS`."""
    if code == HTTPStatus.BAD_REQUEST:
        schema: dict[str, Any] = {"$ref": "#/components/schemas/MalformedRequest"}
    else:
        message = {"$ref": "#/components/schemas/ErrorMessage"}
        schema = {"anyOf": [message, {"type": "array", "items": message, "minItems": 1, "maxItems": 1}]}
    return {"description": ERROR_ANSWERS[code], "content": {"application/json": {"schema": schema}}}


def corrected_openapi(document: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI document of this service as BentoML 1.4.40 renders it (``/docs.json``), corrected where it describes
    the service wrongly; changed in place and returned (correcting twice changes nothing).

    Every API method declares the error answers it really gives (:data:`ERROR_ANSWERS`), and a parameter whose default
    is None accepts null (BentoML's request schema keeps a bare ``$ref`` for ``bars: BarWindow | None = None``).
    """
    document.setdefault("components", {}).setdefault("schemas", {}).update(error_schemas())
    for item in document["paths"].values():
        operation = item.get("post")
        if not operation or "x-bentoml-name" not in operation:
            continue
        operation["responses"].update({str(code): error_answer(code) for code in ERROR_ANSWERS})
        for media in operation.get("requestBody", {}).get("content", {}).values():
            for parameter in media["schema"].get("properties", {}).values():
                if "default" in parameter and parameter["default"] is None:
                    if "$ref" in parameter:
                        parameter["allOf"] = [{"$ref": parameter.pop("$ref")}]
                    parameter["nullable"] = True
    return document


def correct_openapi(service: Any) -> None:
    """Make a ``@bentoml.service``'s OpenAPI (``/docs.json``, the Swagger UI, a Bento's ``openapi.yaml``) the
    :func:`corrected_openapi` one.

    BentoML 1.4.40 has no hook for it: its spec is a property of the service's class, so the service object gets
    a subclass whose spec is BentoML's, corrected (no new state: the same slots).
    """
    base = type(service)

    class CorrectedOpenAPI(base):  # type: ignore[misc,valid-type]
        __slots__ = ()

        @property
        def openapi_spec(self) -> Any:
            from bentoml._internal.service.openapi.specification import OpenAPISpecification
            from bentoml._internal.utils.cattr import bentoml_cattr

            document = corrected_openapi(super().openapi_spec.asdict())
            return bentoml_cattr.structure(document, OpenAPISpecification)

    service.__class__ = CorrectedOpenAPI


FORM_MEDIA_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})


class FormBodiesRefused:
    """ASGI middleware: 415 for a form body (multipart or urlencoded) sent to the API, which takes JSON.

    BentoML 1.4.40 parses such bodies as forms, and answers a malformed multipart body (no boundary, or a body
    that is not multipart) with 500: Starlette's 400 for it is caught as an unexpected error.
    """

    def __init__(self, app: Any, routes: Iterable[str]) -> None:
        self.app = app
        self.routes = frozenset(routes)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            content_type = dict(scope.get("headers", ())).get(b"content-type", b"").decode("latin-1")
            media_type = content_type.split(";")[0].strip().lower()
            if media_type in FORM_MEDIA_TYPES:
                from starlette.responses import JSONResponse

                message = f"Content-Type {media_type} is not accepted: send the body as JSON (application/json)"
                await JSONResponse({"error": message}, status_code=415)(scope, receive, send)
                return
        await self.app(scope, receive, send)
