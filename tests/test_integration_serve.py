"""Integration: a real ``bentoml serve`` of the source service and of the built Bento, called over HTTP."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import pytest

from bentos.schemas import example_records, example_window
from deploy.bento import build, build_context
from tests.integration_helpers import post, served, status

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source_url(production_models: dict[str, str]) -> Iterator[str]:
    with served("bentos.service:MarketModels") as url:
        yield url


@pytest.fixture(scope="module")
def bento_tag(production_models: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    context = build_context(tmp_path_factory.mktemp("bento-context"))
    return build(production_models, context)


def test_every_method_answers_over_http(source_url: str) -> None:
    bars = example_window()
    with bentoml.SyncHTTPClient(source_url) as client:
        direction = client.predict_direction(bars=bars)
        assert 0.0 < direction["probability_up"] < 1.0 and direction["as_of"] == "2018-12-31"
        assert client.predict_return(bars=bars, model="random_forest")["model"]["name"] == "return_random_forest"
        assert client.predict_volatility(bars=bars)["annualized_volatility"] > 0
        assert client.detect_regime(bars=bars)["regime"] in {"calm", "normal", "turbulent"}
        assert len(client.forecast_price(symbol="^IXIC", periods=7)["forecast"]) == 7
        everything = client.predict_all(bars=bars)
        assert everything["direction"] == direction
        # a window as a list of bar objects (DataFrame.to_dict("records")) gets the same answers
        assert client.predict_direction(bars=example_records()) == direction
        assert client.predict_all_batch(windows=[example_records(), bars]) == [everything, everything]
        assert client.predict_all_batch(windows=[bars, bars]) == [everything, everything]
        assert {card["name"] for card in client.models()} >= {"regime_hmm", "price_prophet"}


def test_a_served_answer_is_recorded_by_the_worker(source_url: str) -> None:
    """``bentoml serve`` applies the service's monitoring configuration: the worker writes the JSON lines the
    prediction store ingests, to MLOPS_MONITOR_LOG_PATH (the tests' folder)."""
    from tests.test_recording import recorded

    with bentoml.SyncHTTPClient(source_url) as client:
        answer = client.predict_volatility(bars=example_window(), symbol="SERVED-REC")
    [row] = recorded(symbol="SERVED-REC")
    assert row["model"] == "volatility_lightgbm" and row["prediction"] == answer["annualized_volatility"]
    assert row["request_id"] not in ("", "None")  # a served request's id


def test_health_metrics_and_docs_stay_on(source_url: str) -> None:
    for path in ("/readyz", "/livez", "/metrics", "/", "/docs.json"):  # "/" is the Swagger UI
        assert status(source_url + path) == 200, path
    with bentoml.SyncHTTPClient(source_url) as client:
        client.predict_direction(bars=example_window())
    import urllib.request

    with urllib.request.urlopen(source_url + "/metrics", timeout=5) as response:
        metrics = response.read().decode()
    assert "bentoml_service_request" in metrics
    assert "mlops_feature_pass_windows_count" in metrics  # the coalesced feature computations


def test_openapi_documents_every_method_with_examples(source_url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(source_url + "/docs.json", timeout=5) as response:
        spec = json.loads(response.read())
    paths = spec["paths"]
    for method in (
        "predict_return",
        "predict_direction",
        "predict_volatility",
        "detect_regime",
        "forecast_price",
        "predict_all",
        "predict_all_batch",
        "models",
    ):
        assert f"/{method}" in paths, method
    schema = json.dumps(paths["/predict_direction"])
    assert "2018-12-31" in schema or "2018-12-31" in json.dumps(spec.get("components", {}))


BAD_REQUESTS: list[tuple[str, Any, str, int]] = [
    ("empty body", "", "application/json", 400),
    ("not json", "{not json", "application/json", 400),
    ("missing bars", {}, "application/json", 400),
    ("wrong content type", "bars=1", "text/plain", 400),
    ("strings for numbers", {"bars": {**example_window(), "close": ["x"] * 260}}, "application/json", 400),
    ("nested garbage", {"bars": {"date": [[[[["2018-01-01"]]]]]}}, "application/json", 400),
    ("one bar", {"bars": {k: v[-1:] for k, v in example_window().items()}}, "application/json", 422),
]


@pytest.mark.parametrize(("label", "body", "content_type", "expected"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_with_a_message(
    source_url: str, label: str, body: Any, content_type: str, expected: int
) -> None:
    code, payload = post(source_url + "/predict_direction", body, content_type)
    assert code == expected, (label, payload)
    assert payload


def test_nan_and_negative_prices_over_http(source_url: str) -> None:
    bars = example_window()
    text = json.dumps({"bars": bars}).replace(str(bars["close"][5]), "NaN", 1)
    code, payload = post(source_url + "/predict_volatility", text)
    assert code in (400, 422) and ("not_finite" in json.dumps(payload) or "finite" in json.dumps(payload).lower())
    low = list(bars["low"])
    low[9] = -5.0
    code, payload = post(source_url + "/predict_volatility", {"bars": {**bars, "low": low}})
    assert code == 422 and "row 9" in json.dumps(payload) and "price_not_positive" in json.dumps(payload)


def test_built_bento_serves_the_same_answers(source_url: str, bento_tag: str) -> None:
    bento = bentoml.get(bento_tag)
    src = Path(bento.path) / "src"
    assert (src / "bentos" / "service.py").exists() and (src / "features" / "pipeline.py").exists()
    assert not (src / "training").exists() and not (src / "data").exists() and not (src / "tests").exists()
    bars = example_window()
    with bentoml.SyncHTTPClient(source_url) as client:
        expected = client.predict_all(bars=bars)
        expected_forecast = client.forecast_price(symbol="^GSPC", periods=5)
    with served(bento_tag, env={"MLOPS_PRODUCTION_FILE": ""}) as url, bentoml.SyncHTTPClient(url) as client:
        assert client.predict_all(bars=bars) == expected
        assert client.forecast_price(symbol="^GSPC", periods=5) == expected_forecast
    assert os.environ.get("MLOPS_PRODUCTION_FILE")  # the source service still reads the session manifest
