"""The HAR-RV baseline (Corsi 2009) of the volatility model: an OLS on past realised volatility, fitted on training
rows only."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.regression.linear_model import OLS

from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.baselines import har_regressors, har_volatility
from training.models.volatility_lightgbm import VolatilityLightGBM


def test_har_regressors_are_the_trailing_daily_weekly_and_monthly_volatility() -> None:
    close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 60)))
    x = har_regressors(close)
    returns = np.diff(np.log(close))
    t = 40  # bar t: the returns ending at bars t-w+1 .. t
    for column, window in enumerate((1, 5, 22)):
        assert x[t, column] == pytest.approx(np.sqrt(np.mean(returns[t - window : t] ** 2) * 252))
    assert np.isnan(x[21, 2]) and np.isfinite(x[22, 2])


def test_har_is_the_least_squares_fit_on_the_training_rows_alone(quick_panel: Panel) -> None:
    trainer = VolatilityLightGBM(TrainingConfig.quick())
    split = trainer.splits(quick_panel)[0]
    target = trainer.labels(quick_panel)
    forecast = har_volatility(quick_panel, split.train, split.test, target)
    symbol = "^GSPC"
    bars = quick_panel.bars[symbol]
    x = har_regressors(bars["close"].to_numpy(float))
    rows = split.train[quick_panel.symbols[split.train] == symbol]
    xt, yt = x[quick_panel.positions[rows]], target[rows]
    known = np.isfinite(xt).all(axis=1) & np.isfinite(yt)
    fit = OLS(yt[known], np.column_stack([np.ones(known.sum()), xt[known]])).fit()
    test = split.test[quick_panel.symbols[split.test] == symbol]
    expected = fit.predict(np.column_stack([np.ones(test.size), x[quick_panel.positions[test]]]))
    np.testing.assert_allclose(forecast[quick_panel.symbols[split.test] == symbol], expected, rtol=1e-9)
    assert fit.params[1:].sum() > 0.5  # persistence: realised volatility forecasts itself

    future = target.copy()
    future[split.test] *= 3.0  # what happens in the test period cannot move the forecast
    np.testing.assert_array_equal(har_volatility(quick_panel, split.train, split.test, future), forecast)
