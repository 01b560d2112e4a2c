"""price_prophet's conformal intervals (bentos/prophet_intervals.py) on known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bentos.prophet_intervals import (
    MIN_SCORES,
    ConformalInterval,
    close_variance,
    continued_variance,
    ewma_variance,
    scores,
)


def test_the_quantiles_are_the_conformal_ranks() -> None:
    interval = ConformalInterval.calibrate(np.arange(1.0, 100.0)[::-1], level=0.8)  # n = 99: ranks 10 and 90
    assert (interval.z_lower, interval.z_upper, interval.scores) == (10.0, 90.0, 99)
    interval = ConformalInterval.calibrate(np.r_[np.arange(1.0, 100.0), np.nan], level=0.8)  # NaN left out
    assert interval.scores == 99


def test_exchangeable_scores_are_covered_at_the_nominal_level() -> None:
    rng = np.random.default_rng(0)
    interval = ConformalInterval.calibrate(rng.standard_t(4, 2000), level=0.8)
    fresh = rng.standard_t(4, 50_000)
    covered = np.mean((fresh >= interval.z_lower) & (fresh <= interval.z_upper))
    assert covered == pytest.approx(0.8, abs=0.02)


def test_bounds_widen_with_the_horizon_and_the_volatility() -> None:
    interval = ConformalInterval(0.8, -1.0, 1.5, 100)
    lower, upper = interval.bounds(np.array([100.0, 100.0, 100.0]), 0.01, np.array([0, 1, 4]))
    np.testing.assert_allclose(lower, [100.0, 100 * math.exp(-0.01), 100 * math.exp(-0.02)])
    np.testing.assert_allclose(upper, [100.0, 100 * math.exp(0.015), 100 * math.exp(0.03)])
    wide_lower, _ = interval.bounds(np.array([100.0]), 0.02, np.array([1]))
    assert wide_lower[0] < lower[1]
    assert scores(np.array([100 * math.exp(0.03)]), np.array([100.0]), np.array([0.01]), np.array([4]))[0] == (
        pytest.approx(1.5)
    )


def test_too_few_scores_or_an_unknown_card_are_refused() -> None:
    with pytest.raises(ValueError, match=f"fewer than {MIN_SCORES}"):
        ConformalInterval.calibrate(np.arange(MIN_SCORES - 1.0))
    interval = ConformalInterval(0.8, -1.2, 1.3, 500)
    assert ConformalInterval.from_card(interval.card()) == interval
    with pytest.raises(ValueError, match="does not apply"):
        ConformalInterval.from_card({**interval.card(), "method": "prophet"})
    with pytest.raises(ValueError, match="no usable"):
        ConformalInterval.from_card({"method": interval.card()["method"]})


def test_the_variance_carried_through_later_closes_is_the_recursion_over_all_of_them() -> None:
    close = 100 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 200)))
    whole = close_variance(close)
    carried = continued_variance(float(whole[149]), float(close[149]), close[150:])
    assert carried == pytest.approx(whole[-1], rel=1e-12)
    returns = np.diff(np.log(close))
    assert np.isnan(ewma_variance(returns)[:30]).all() and np.isfinite(ewma_variance(returns)[30:]).all()
