"""The volatility model learns the correction to a baseline read from the feature row (bentos/volatility_anchor.py):
one implementation that the trainer fits with and the service applies, and a model that stays near its baseline
when it has little to learn from."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bentos import volatility_anchor
from features import DEFAULT_SPEC
from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.splits import walk_forward_splits, window_start, yearly_test_periods
from training.models.volatility_lightgbm import VolatilityLightGBM

NAMES = list(DEFAULT_SPEC.names)


def test_the_anchor_is_the_geometric_mean_of_three_realised_volatilities() -> None:
    row = np.zeros((1, len(NAMES)))
    row[0, [NAMES.index("rv_5"), NAMES.index("rv_21"), NAMES.index("rv_63")]] = [0.1, 0.2, 0.4]
    assert np.exp(volatility_anchor.log_anchor(row, NAMES))[0] == pytest.approx(0.2)
    row[0, NAMES.index("rv_5")] = 0.0  # a flat week: floored, never log(0)
    assert np.exp(volatility_anchor.log_anchor(row, NAMES))[0] == pytest.approx((1e-4 * 0.2 * 0.4) ** (1 / 3))
    with pytest.raises(ValueError, match="rv_5"):
        volatility_anchor.log_anchor(row, ["ret_1"] * len(NAMES))


@pytest.mark.parametrize(
    "details",
    [{}, {"anchor": None}, {"anchor": {**volatility_anchor.card(), "floor": 0.01}}, {"anchor": {"combination": "x"}}],
)
def test_a_card_without_the_anchor_this_code_applies_is_refused(details: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="anchor"):
        volatility_anchor.from_card(details)
    assert volatility_anchor.from_card({"anchor": volatility_anchor.card()}) == volatility_anchor.FEATURES


def test_trained_on_a_few_hundred_rows_the_model_stays_near_its_anchor(quick_panel: Panel) -> None:
    trainer = VolatilityLightGBM(TrainingConfig.quick())
    target = trainer.labels(quick_panel)
    rows = np.flatnonzero(np.isfinite(target))
    train, test = rows[:300], rows[1000:3000]
    booster = trainer.fit_model(quick_panel.features[train], target[train])
    forecast = np.log(trainer.predict(booster, quick_panel.features[test]))
    anchor = volatility_anchor.log_anchor(quick_panel.features[test], NAMES)
    assert np.corrcoef(forecast, anchor)[0, 1] > 0.9  # follows the day's volatility, not a constant
    assert np.std(forecast) > 0.5 * np.std(anchor)


def test_the_service_forecasts_exactly_as_the_trainer(production_models: dict[str, str]) -> None:
    import bentoml

    from bentos.runners import VolatilityRunner, load_runner

    stored = bentoml.models.get(production_models["volatility_lightgbm"])
    runner = load_runner("volatility_lightgbm", stored)
    assert isinstance(runner, VolatilityRunner)
    assert stored.info.metadata["details"]["anchor"] == volatility_anchor.card()
    rows = np.abs(np.random.default_rng(0).normal(size=(50, len(NAMES)))) * 0.2
    expected = VolatilityLightGBM(TrainingConfig.quick()).predict(runner.booster, rows)
    np.testing.assert_array_equal(runner.predict(rows), expected)
    np.testing.assert_array_equal(np.concatenate([runner.predict(row[None]) for row in rows]), expected)


def test_a_rolling_window_trains_each_fold_on_its_last_years_only(quick_panel: Panel) -> None:
    panel = quick_panel
    periods = yearly_test_periods(panel.dates, 2)
    splits = walk_forward_splits(panel.dates, panel.target_end[5], periods, train_years=1)
    for split in splits:
        first, year = panel.dates[split.train].min(), int(str(split.test_start)[:4])
        assert window_start(split.test_start, 1) == np.datetime64(f"{year - 1}-01-01", "D")
        assert np.datetime64(f"{year - 1}-01-01", "D") <= first < np.datetime64(f"{year - 1}-01-08", "D")
        assert (panel.dates[split.train] < split.test_start).all()
    assert not set(splits[0].train) < set(splits[1].train)  # rolling, not expanding
