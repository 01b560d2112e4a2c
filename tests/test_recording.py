"""Every answer the service gives is recorded through bentoml.monitor, and the prediction store reads it (issue 16).

The service runs in process here (the same class ``bentoml serve`` runs); the served path is in
``tests/test_integration_serve.py``.
"""

from __future__ import annotations

import importlib
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from bentos import recording
from bentos.schemas import BarWindow, example_window
from bentos.settings import ServiceSettings
from features import DEFAULT_SPEC, validate_bars
from monitoring.store import PredictionStore
from tests.test_service import Blocking, expect_error


@pytest.fixture(scope="module")
def service(production_models: dict[str, str]) -> Any:
    return Blocking(importlib.import_module("bentos.service").MarketModels())


def recorded(**where: str) -> list[dict[str, Any]]:
    """The recorded rows (of every worker file) whose columns equal ``where``."""
    folder = ServiceSettings().monitor_logs / recording.MONITOR / "data"
    rows = [json.loads(line) for path in sorted(folder.glob("data.*.log*")) for line in path.read_text().splitlines()]
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def test_a_window_answer_is_recorded_with_its_features_symbol_and_model(service: Any) -> None:
    answer = service.predict_direction(bars=BarWindow(**example_window()), symbol="REC-DIRECTION")
    [row] = recorded(symbol="REC-DIRECTION")
    data = example_window()
    bars = validate_bars(data["date"], data["open"], data["high"], data["low"], data["close"], data["volume"])
    assert recording.decode_features(row["features"]) == DEFAULT_SPEC.compute(bars, rows=1)[0].tolist()  # exact
    assert row["method"] == "predict_direction" and row["model"] == "direction_lightgbm"
    assert (row["version"], row["as_of"], row["horizon_days"]) == (answer.model.version, answer.as_of, 1)
    assert row["prediction"] == answer.probability_up and row["label"] == answer.direction
    assert row["request_id"] and row["timestamp"]


def test_every_model_of_predict_all_and_every_forecast_date_is_a_row(service: Any) -> None:
    everything = service.predict_all(bars=BarWindow(**example_window()), symbol="REC-ALL")
    rows = {r["model"]: r for r in recorded(symbol="REC-ALL")}
    assert set(rows) == {
        "return_lightgbm", "return_random_forest", "direction_lightgbm", "volatility_lightgbm", "regime_hmm"
    }  # fmt: skip
    assert rows["volatility_lightgbm"]["prediction"] == everything.volatility.annualized_volatility
    assert rows["regime_hmm"]["label"] == everything.regime.regime
    assert rows["regime_hmm"]["prediction"] == list(everything.regime.probabilities).index(everything.regime.regime)
    forecast = service.forecast_price(symbol="^IXIC", periods=3)
    points = [r for r in recorded(method="forecast_price", symbol="^IXIC") if r["as_of"] == forecast.anchor_date]
    expected = [(h, p.date, p.price) for h, p in enumerate(forecast.forecast, start=1)]
    seen = [(r["horizon_days"], r["target_date"], r["prediction"]) for r in points]
    # other tests' forecasts of the symbol may be in the logs too: this one's is a run of three rows of one record
    runs = [points[i : i + 3] for i in range(len(seen) - 2) if seen[i : i + 3] == expected]
    assert any(len({r["timestamp"] for r in run}) == 1 for run in runs), seen
    assert all(r["features"] == "" for r in points)


def test_a_refused_batch_records_nothing_and_a_served_one_is_stored(service: Any, tmp_path: Path) -> None:
    windows = [BarWindow(**example_window())] * 2
    message = expect_error(
        HTTPStatus.UNPROCESSABLE_ENTITY, service.predict_all_batch, windows=windows, symbols=["REC-BAD"]
    )
    assert "1 symbols for 2 windows" in message and not recorded(symbol="REC-BAD")
    service.predict_all_batch(windows=windows, symbols=["REC-B1", None])
    assert len(recorded(symbol="REC-B1")) == 5 and len(recorded(method="predict_all_batch", symbol="")) >= 5
    store = PredictionStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    store.ingest(ServiceSettings().monitor_logs)
    stored = store.rows(symbol="REC-B1")
    assert sorted(r["model"] for r in stored) == sorted(r["model"] for r in recorded(symbol="REC-B1"))


def test_a_feature_row_round_trips_bit_for_bit() -> None:
    import numpy as np

    values = [0.1, -1e-300, float("nan"), float("inf"), 1 / 3]
    assert np.array_equal(recording.decode_features(recording.encode_features(values)), values, equal_nan=True)
    assert recording.encode_features([]) == "" and recording.decode_features("") == []
