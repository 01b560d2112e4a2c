"""The service in process: every method answers correctly, every class of bad input gets a 4xx error."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
from http import HTTPStatus
from typing import Any

import pytest
from bentoml.exceptions import BentoMLException

from bentos.schemas import BarWindow, example_window
from features import DEFAULT_SPEC, validate_bars


class Blocking:
    """The service with its coroutine methods run to completion, so every method is called the same way."""

    def __init__(self, instance: Any) -> None:
        self.instance = instance

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.instance, name)
        if not callable(value):
            return value

        @functools.wraps(value)
        def call(*args: Any, **kwargs: Any) -> Any:
            answer = value(*args, **kwargs)
            return asyncio.run(answer) if inspect.isawaitable(answer) else answer

        return call


@pytest.fixture(scope="module")
def service(production_models: dict[str, str]) -> Any:
    module = importlib.import_module("bentos.service")
    return Blocking(module.MarketModels())


def window(**changes: Any) -> BarWindow:
    data = {k: list(v) for k, v in example_window().items()}
    data.update(changes)
    return BarWindow(**data)


def expect_error(status: HTTPStatus, call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(BentoMLException) as caught:
        call(*args, **kwargs)
    assert caught.value.error_code == status, caught.value
    return str(caught.value)


def test_direction_matches_the_stored_model_on_the_shared_features(service: Any) -> None:
    answer = service.predict_direction(bars=window())
    data = example_window()
    bars = validate_bars(data["date"], data["open"], data["high"], data["low"], data["close"], data["volume"])
    features = DEFAULT_SPEC.compute(bars, rows=1)
    assert answer.probability_up == pytest.approx(float(service.direction.predict(features)[0]), abs=0)
    assert answer.as_of == "2018-12-31" and answer.horizon_days == 1
    assert answer.direction == ("up" if answer.probability_up >= answer.threshold else "down")
    assert answer.model.name == "direction_lightgbm"
    assert f"direction_lightgbm:{answer.model.version}" == service.direction.identity.tag


def test_return_models(service: Any) -> None:
    lgbm = service.predict_return(bars=window(), model="lightgbm")
    forest = service.predict_return(bars=window(), model="random_forest")
    assert lgbm.model.name == "return_lightgbm" and forest.model.name == "return_random_forest"
    assert lgbm.horizon_days == 5 and abs(lgbm.expected_log_return) < 0.2


def test_volatility_is_positive_and_plausible(service: Any) -> None:
    answer = service.predict_volatility(bars=window())
    assert 0.02 < answer.annualized_volatility < 1.5
    assert answer.horizon_days == 5


def test_regime_probabilities(service: Any) -> None:
    answer = service.detect_regime(bars=window())
    assert set(answer.probabilities) == {"calm", "normal", "turbulent"}
    assert sum(answer.probabilities.values()) == pytest.approx(1.0)
    assert answer.regime == max(answer.probabilities, key=answer.probabilities.__getitem__)
    assert answer.regime == "turbulent"  # December 2018: the S&P 500 fell 9 % with daily swings of 2-5 %


def test_predict_all_agrees_with_the_single_methods(service: Any) -> None:
    everything = service.predict_all(bars=window())
    assert everything.direction == service.predict_direction(bars=window())
    assert everything.volatility == service.predict_volatility(bars=window())
    assert everything.return_lightgbm == service.predict_return(bars=window())
    assert everything.regime == service.detect_regime(bars=window())


def test_batch_equals_one_by_one(service: Any) -> None:
    data = example_window()
    shorter = window(**{k: v[:-5] for k, v in data.items()})
    batch = service.predict_all_batch(windows=[window(), shorter])
    assert batch == [service.predict_all(bars=window()), service.predict_all(bars=shorter)]


def test_forecast_price(service: Any) -> None:
    answer = service.forecast_price(symbol="^GSPC", periods=5)
    assert len(answer.forecast) == 5 and answer.anchor_date == "2018-12-31"
    assert answer.forecast[0].date == "2019-01-01"
    for point in answer.forecast:
        assert point.lower <= point.price <= point.upper
        assert abs(point.price / answer.anchor_close - 1) < 0.1
    anchored = service.forecast_price(
        symbol="^GSPC",
        periods=3,
        bars=window(
            close=[c * 1.1 for c in example_window()["close"]], high=[h * 1.1 for h in example_window()["high"]]
        ),
    )
    assert anchored.anchor_close == pytest.approx(example_window()["close"][-1] * 1.1)


def test_models_returns_the_served_cards(service: Any, production_models: dict[str, str]) -> None:
    cards = {c.name: c for c in service.models()}
    assert set(cards) == set(production_models)
    for name, card in cards.items():
        assert f"{name}:{card.version}" == production_models[name]
        assert card.card["feature_spec_hash"] == DEFAULT_SPEC.version_hash


# ---- bad input: always a 4xx naming the problem ---------------------------------------------------------


def test_too_few_bars_says_how_many_are_needed(service: Any) -> None:
    data = example_window()
    message = expect_error(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        service.predict_direction,
        bars=window(**{k: v[-100:] for k, v in data.items()}),
    )
    assert "100 bars given, at least 252 are needed" in message


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("close", float("nan"), "not_finite"),
        ("close", float("inf"), "not_finite"),
        ("low", -1.0, "price_not_positive"),
        ("open", 0.0, "price_not_positive"),
        ("volume", -10.0, "volume_negative"),
        ("high", 1.0, "high_below_open_close"),
    ],
)
def test_bad_values_name_the_row_and_rule(service: Any, column: str, value: float, rule: str) -> None:
    values = list(example_window()[column])
    values[17] = value
    message = expect_error(HTTPStatus.UNPROCESSABLE_ENTITY, service.predict_volatility, bars=window(**{column: values}))
    assert "row 17" in message and rule in message


def test_unsorted_duplicate_and_invalid_dates(service: Any) -> None:
    dates = list(example_window()["date"])
    dates[10], dates[11] = dates[11], dates[10]
    dates[20] = dates[19]
    dates[30] = "2018-02-30"
    message = expect_error(HTTPStatus.UNPROCESSABLE_ENTITY, service.detect_regime, bars=window(date=dates))
    assert "date_unsorted" in message and "date_duplicate" in message and "date_invalid" in message


def test_ragged_columns(service: Any) -> None:
    message = expect_error(
        HTTPStatus.UNPROCESSABLE_ENTITY, service.predict_all, bars=window(volume=example_window()["volume"][:-1])
    )
    assert "same length" in message and "volume=259" in message


def test_too_many_bars_and_windows(service: Any) -> None:
    data = example_window()
    huge = {k: v * 30 for k, v in data.items()}
    message = expect_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, service.predict_direction, bars=window(**huge))
    assert "at most 5000" in message
    message = expect_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, service.predict_all_batch, windows=[window()] * 300)
    assert "at most 256" in message


def test_batch_errors_name_the_window(service: Any) -> None:
    values = list(example_window()["low"])
    values[3] = -1.0
    message = expect_error(
        HTTPStatus.UNPROCESSABLE_ENTITY, service.predict_all_batch, windows=[window(), window(low=values)]
    )
    assert message.startswith("windows[1]: ") and "row 3" in message


def test_unknown_symbol_lists_the_known_ones(service: Any) -> None:
    message = expect_error(HTTPStatus.NOT_FOUND, service.forecast_price, symbol="AAPL", periods=5)
    assert "AAPL" in message and "^GSPC" in message and "^IXIC" in message


def test_features_shared_with_training(service: Any) -> None:
    """The service computes features with the same FeatureSpec the models were trained on."""
    assert all(r.card.get("feature_spec_hash") == DEFAULT_SPEC.version_hash for r in service.all_runners)


def test_concurrent_requests_share_one_feature_pass_and_get_their_own_answers(service: Any) -> None:
    data = example_window()
    windows = [window(**{k: v[: len(v) - cut] for k, v in data.items()}) for cut in (0, 1, 3, 8)]
    alone = [service.predict_direction(bars=w) for w in windows]
    instance = service.instance

    async def together() -> list[Any]:
        return await asyncio.gather(
            *(instance.predict_direction(bars=w) for w in windows),
            instance.predict_volatility(bars=windows[0]),
        )

    before = instance.latest_rows.batches
    *answers, volatility = asyncio.run(together())
    assert instance.latest_rows.batches == before + 1  # five requests, one feature computation
    assert answers == alone
    assert [a.as_of for a in answers] == [data["date"][-1 - cut] for cut in (0, 1, 3, 8)]
    assert volatility == service.predict_volatility(bars=windows[0])


def test_a_bad_window_among_concurrent_requests_fails_alone(service: Any) -> None:
    instance = service.instance
    values = list(example_window()["low"])
    values[3] = -1.0

    async def together() -> list[Any]:
        return await asyncio.gather(
            instance.predict_direction(bars=window()),
            instance.predict_direction(bars=window(low=values)),
            return_exceptions=True,
        )

    good, bad = asyncio.run(together())
    assert good == service.predict_direction(bars=window())
    assert isinstance(bad, BentoMLException) and bad.error_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert "row 3" in str(bad)


def test_concurrent_windows_are_checked_together_yet_each_error_is_its_own(service: Any) -> None:
    instance = service.instance
    data = example_window()
    short = {k: v[-100:] for k, v in data.items()}
    unsorted = {k: list(v) for k, v in data.items()}
    unsorted["date"][5], unsorted["date"][6] = unsorted["date"][6], unsorted["date"][5]

    async def together() -> list[Any]:
        return await asyncio.gather(
            instance.predict_direction(bars=window()),
            instance.predict_direction(bars=window(**short)),
            instance.predict_volatility(bars=window(**unsorted)),
            instance.predict_return(bars=window()),
            return_exceptions=True,
        )

    good, too_short, disordered, returned = asyncio.run(together())
    assert good == service.predict_direction(bars=window())
    assert returned == service.predict_return(bars=window())
    assert isinstance(too_short, BentoMLException) and too_short.error_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert "100 bars given, at least 252 are needed" in str(too_short)
    assert isinstance(disordered, BentoMLException) and disordered.error_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert "row 6" in str(disordered) and "dates must increase" in str(disordered)
