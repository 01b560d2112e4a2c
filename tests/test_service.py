"""The service in process: every method answers correctly, every class of bad input gets a 4xx error."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
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
    # quick mode keeps 2 states on 2010-2018: 3 states' independent refits agree on only ~0.85 of days there
    assert set(answer.probabilities) == {"calm", "turbulent"}
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
    assert answer.forecast[0].date == "2019-01-02"  # the exchange's next session (XNYS: closed on New Year's Day)
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


# ---- windows as a list of bar objects (DataFrame.to_dict("records")) -----------------------------------------


def records(**changes: Any) -> list[dict[str, Any]]:
    """The example window with some columns replaced, as a list of bar objects."""
    data = {k: list(v) for k, v in example_window().items()}
    data.update(changes)
    return [dict(zip(data, bar, strict=True)) for bar in zip(*data.values(), strict=True)]


def test_a_list_of_bar_objects_gets_the_same_answers_as_columns(service: Any) -> None:
    rows = records()
    assert rows[0] == {k: v[0] for k, v in example_window().items()}  # what pandas' to_dict("records") gives
    assert service.predict_direction(bars=rows) == service.predict_direction(bars=window())
    assert service.predict_volatility(bars=rows) == service.predict_volatility(bars=window())
    assert service.predict_return(bars=rows, model="random_forest") == service.predict_return(
        bars=window(), model="random_forest"
    )
    assert service.detect_regime(bars=rows) == service.detect_regime(bars=window())
    assert service.predict_all(bars=rows) == service.predict_all(bars=window())
    assert service.predict_all_batch(windows=[rows, window()]) == [service.predict_all(bars=window())] * 2
    assert service.forecast_price(periods=3, bars=rows) == service.forecast_price(periods=3, bars=window())


def test_the_records_form_is_read_by_the_methods_request_schema(service: Any) -> None:
    """What BentoML parses a request body into: the columns form stays BarWindow, a list becomes bar objects; the
    400's errors are those of the form that was sent, and a value of neither form gets one error naming both."""
    from pydantic import ValidationError

    from bentos.client_errors import field_errors
    from bentos.service import MarketModels

    spec = MarketModels.apis["predict_direction"].input_spec
    batch = MarketModels.apis["predict_all_batch"].input_spec
    assert isinstance(spec.model_validate_json(json.dumps({"bars": example_window()})).bars, BarWindow)
    assert spec.model_validate_json(json.dumps({"bars": records()})).bars == records()

    def errors(spec: Any, body: Any) -> list[dict[str, Any]]:
        with pytest.raises(ValidationError) as refused:
            spec.model_validate_json(json.dumps(body))
        return field_errors(refused.value.errors(include_context=False, include_input=False))

    (neither,) = errors(spec, {"bars": "2018-01-02"})
    assert (neither["loc"], neither["rule"]) == (["bars"], "window_form")
    assert "list of bar objects" in neither["message"] and "columns" in neither["message"]
    bad_bar = [*records()[:3], {**records()[3], "close": "x"}]
    assert errors(spec, {"bars": bad_bar}) == [
        {"loc": ["bars", 3, "close"], "row": 3, "rule": "float_type", "message": "Input should be a valid number"}
    ]
    bad_column = {**example_window(), "close": [*example_window()["close"][:4], "x"]}
    assert errors(batch, {"windows": [records(), bad_column]}) == [
        {"loc": ["windows", 1, "close", 4], "row": 4, "rule": "float_type", "message": "Input should be a valid number"}
    ]


@pytest.mark.parametrize(
    ("column", "row", "value"),
    [("low", 9, -5.0), ("close", 4, float("nan")), ("date", 20, "2018-01-17"), ("high", 30, 100.0)],
)
def test_the_same_bad_window_in_either_form_gets_the_same_message(
    service: Any, column: str, row: int, value: Any
) -> None:
    values = list(example_window()[column])
    values[row] = value
    for method in (service.predict_direction, service.detect_regime, service.predict_all):
        with pytest.raises(BentoMLException) as as_columns:
            method(bars=window(**{column: values}))
        with pytest.raises(BentoMLException) as as_records:
            method(bars=records(**{column: values}))
        assert as_columns.value.error_code == as_records.value.error_code == HTTPStatus.UNPROCESSABLE_ENTITY
        assert str(as_columns.value) == str(as_records.value) and f"row {row}" in str(as_records.value)
        assert getattr(as_columns.value, "errors", None) == getattr(as_records.value, "errors", None)


def test_contract_errors_name_row_rule_and_where(service: Any) -> None:
    values = list(example_window()["low"])
    values[9] = -5.0
    with pytest.raises(BentoMLException) as caught:
        service.predict_all_batch(windows=[window(), records(low=values)])
    assert caught.value.errors == [  # type: ignore[attr-defined]
        {
            "loc": ["windows", 1, "low"],
            "row": 9,
            "rule": "price_not_positive",
            "message": "row 9, date 2018-01-02: low=-5.0 must be > 0 [price_not_positive]",
        }
    ]


# ---- the skill record of each model's card, in every answer ---------------------------------------------------


def test_model_refs_carry_the_skill_record_of_the_card() -> None:
    from bentos.schemas import model_ref

    skill = {
        "shown": True,
        "metric": "qlike",
        "model": 0.61,
        "baseline": "garch_1_1",
        "baseline_value": 0.74,
        "statement": "beats GARCH(1,1) on QLIKE in walk-forward evaluation (0.61 vs 0.74)",
    }
    with_skill = model_ref("volatility_lightgbm", "abc", {"task": "volatility", "skill": skill})
    assert (with_skill.skill_shown, with_skill.skill_note) == (True, skill["statement"])
    none_shown = model_ref("direction_lightgbm", "def", {"skill": {**skill, "shown": False, "statement": "no"}})
    assert (none_shown.skill_shown, none_shown.skill_note) == (False, "no")
    without = model_ref("regime_hmm", "ghi", {"task": "regime"})
    assert (without.skill_shown, without.skill_note) == (None, None)
    assert without.model_dump() == {"name": "regime_hmm", "version": "ghi", "skill_shown": None, "skill_note": None}
    broken = model_ref("return_lightgbm", "jkl", {"skill": "yes"})  # not a record: nothing claimed
    assert (broken.skill_shown, broken.skill_note) == (None, None)


def test_every_answer_names_the_skill_its_models_card_records(service: Any) -> None:
    everything = service.predict_all(bars=window())
    runners = {r.identity.name: r for r in service.all_runners}
    for answer in (everything.direction, everything.volatility, everything.regime, everything.return_lightgbm):
        skill = runners[answer.model.name].card.get("skill")
        assert answer.model.skill_shown == (skill["shown"] if skill else None)
        assert answer.model.skill_note == (skill["statement"] if skill else None)
    assert everything.regime.model.skill_shown is None  # the regime model has no baseline to beat
