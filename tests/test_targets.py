"""Training targets look forward exactly ``horizon`` bars and never backward."""

from __future__ import annotations

import numpy as np

from features.targets import forward_log_return, forward_realized_volatility, next_day_direction


def test_forward_log_return_exact() -> None:
    close = np.array([100.0, 110.0, 99.0, 120.0, 120.0])
    np.testing.assert_allclose(forward_log_return(close, 2)[:3], np.log([99 / 100, 120 / 110, 120 / 99]))
    assert np.isnan(forward_log_return(close, 2)[3:]).all()


def test_next_day_direction_exact() -> None:
    close = np.array([1.0, 2.0, 2.0, 1.0, 3.0])
    np.testing.assert_array_equal(next_day_direction(close), [1.0, 0.0, 0.0, 1.0, np.nan])


def test_forward_realized_volatility_uses_the_next_horizon_returns() -> None:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 50)))
    vol = forward_realized_volatility(close, 5)
    r = np.diff(np.log(close))
    t = 10
    assert vol[t] == np.sqrt(np.mean(r[t : t + 5] ** 2) * 252)
    assert np.isnan(vol[-5:]).all()
    assert np.isfinite(vol[:-5]).all()


def test_targets_at_t_do_not_depend_on_bars_before_t() -> None:
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 60)))
    changed = close.copy()
    changed[:20] *= 1.5  # rewrite the past
    for target in (lambda c: forward_log_return(c, 5), next_day_direction, forward_realized_volatility):
        np.testing.assert_array_equal(target(close)[20:], target(changed)[20:])


def test_short_series_give_all_nan() -> None:
    close = np.array([1.0, 2.0])
    assert np.isnan(forward_log_return(close, 5)).all()
    assert np.isnan(forward_realized_volatility(close, 5)).all()
