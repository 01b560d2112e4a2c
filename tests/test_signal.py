"""Signal quality (training/evaluation/signal.py): ICs, their intervals, quantiles and calibration, on known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.evaluation.signal import (
    buckets,
    calibration,
    grouped_correlation,
    hac_setting,
    information_coefficient,
    mean_interval,
    quantile_analysis,
)


def panel_frame(symbols: int, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2015-01-01", periods=days)
    frame = pd.DataFrame(
        {
            "date": np.repeat(dates.to_numpy(), symbols),
            "symbol": np.tile([f"S{i:03d}" for i in range(symbols)], days),
            "realised": rng.normal(0.0, 0.02, days * symbols),
        }
    )
    return frame


@pytest.mark.parametrize("symbols", [1, 2, 30])
def test_a_signal_equal_to_the_future_return_has_ic_one(symbols: int) -> None:
    frame = panel_frame(symbols, 300)
    frame["prediction"] = frame["realised"]
    ic = information_coefficient(frame, horizon=5)
    assert ic["kind"] == ("cross_sectional" if symbols >= 10 else "time_series")
    for column in ("pearson", "rank"):
        assert ic[column]["mean"] == pytest.approx(1.0)
        assert ic[column]["evidence"] == "positive"
    assert ic["by_symbol"]["median"] == pytest.approx(1.0)


@pytest.mark.parametrize("symbols", [2, 30])
def test_a_shuffled_signal_has_no_evidence_of_skill(symbols: int) -> None:
    frame = panel_frame(symbols, 500, seed=1)
    frame["prediction"] = np.random.default_rng(7).permutation(frame["realised"].to_numpy())
    ic = information_coefficient(frame, horizon=5)
    for column in ("pearson", "rank"):
        summary = ic[column]
        assert summary["ci_low"] < 0 < summary["ci_high"]
        assert summary["evidence"] == "none"
        assert abs(summary["mean"]) < 0.05


def test_grouped_correlations_are_pearson_and_spearman_per_group() -> None:
    rng = np.random.default_rng(3)
    keys = np.repeat(["a", "b", "c"], 12)
    x, y = rng.normal(size=36), rng.normal(size=36)
    y[5] = np.nan  # a missing target leaves its row out of its group only
    pearson = grouped_correlation(keys, x, y)
    spearman = grouped_correlation(keys, x, y, rank=True)
    for key in "abc":
        rows = (keys == key) & np.isfinite(y)
        assert pearson[key] == pytest.approx(np.corrcoef(x[rows], y[rows])[0, 1])
        assert spearman[key] == pytest.approx(pd.Series(x[rows]).corr(pd.Series(y[rows]), method="spearman"))


def test_a_group_too_small_or_without_variation_has_no_ic() -> None:
    keys = np.array(["short"] * 5 + ["flat"] * 12)
    x = np.r_[np.arange(5.0), np.ones(12)]
    ic = grouped_correlation(keys, x, np.arange(17.0))
    assert ic.isna().all()


def test_the_interval_uses_newey_wests_standard_error() -> None:
    x = np.array([0.10, -0.02, 0.05, 0.08, -0.04, 0.03, 0.07, 0.01, -0.01, 0.06])
    lags = 2
    d = x - x.mean()
    gamma = [np.sum(d[lag:] * d[: d.size - lag]) / d.size for lag in range(lags + 1)]
    variance = gamma[0] + 2 * sum((1 - lag / (lags + 1)) * gamma[lag] for lag in range(1, lags + 1))
    se = np.sqrt(variance / x.size)
    summary = mean_interval(x, lags)
    assert summary["se"] == pytest.approx(se)
    assert summary["t_stat"] == pytest.approx(x.mean() / se)
    assert summary["ci_low"] == pytest.approx(x.mean() - 1.959963984540054 * se)
    assert summary["ir"] == pytest.approx(x.mean() / x.std(ddof=1))


def test_overlapping_targets_get_hansen_hodrick_one_day_targets_newey_west() -> None:
    assert hac_setting(100, horizon=1) == (4, "bartlett")
    assert hac_setting(1500, horizon=5) == (4, "uniform")
    assert hac_setting(10, horizon=8) == (7, "uniform")


def test_the_interval_of_overlapping_five_day_sums_covers_their_mean_95_percent_of_the_time() -> None:
    """The point of the kernel: daily ICs of 5-day returns are as correlated as overlapping 5-day sums. Newey-West's
    Bartlett kernel at 4 lags covered about 89 % here; Hansen-Hodrick's must be near the nominal 95 %."""
    rng = np.random.default_rng(11)
    covered = []
    for _ in range(300):
        sums = np.convolve(rng.standard_normal(1004), np.ones(5), "valid")  # mean 0, autocorrelated to lag 4
        summary = mean_interval(sums, *hac_setting(sums.size, horizon=5))
        covered.append(summary["ci_low"] <= 0.0 <= summary["ci_high"])
    assert 0.92 <= np.mean(covered) <= 0.98
    bartlett = [mean_interval(np.convolve(rng.standard_normal(1004), np.ones(5), "valid"), 4)["se"] for _ in range(50)]
    assert np.mean(bartlett) < 0.9 * np.sqrt(5 * 5 / 1000)  # too narrow: the true standard error is sqrt(h² / T)


def test_tied_predictions_share_a_quantile() -> None:
    frame = pd.DataFrame({"date": "2020-01-01", "symbol": list("ABCDEFGHIJ"), "prediction": [0.0] * 5 + [1.0] * 5})
    q = buckets(frame, cross_sectional=True)
    assert len(set(q[:5])) == 1 and len(set(q[5:])) == 1 and q[5] > q[0]


def test_quantiles_of_a_perfect_signal_rise_and_a_reshuffled_top_turns_over() -> None:
    frame = panel_frame(30, 50, seed=2)
    frame["prediction"] = frame["realised"]
    q = quantile_analysis(frame, horizon=1)
    assert np.all(np.diff(q["mean_realised"]) > 0)
    assert q["spread"] == pytest.approx(q["mean_realised"][-1] - q["mean_realised"][0])
    assert q["turnover_top"] > 0.5  # independent returns: the top fifth is mostly new every day
    frame["prediction"] = frame["symbol"].str[1:].astype(float)  # a fixed ranking never trades
    q = quantile_analysis(frame, horizon=5)
    assert q["turnover_top"] == 0.0
    assert q["turnover_bottom"] == 0.0


def test_calibration_on_a_hand_computed_example() -> None:
    p = np.array([0.05, 0.15, 0.15, 0.95, np.nan])
    y = np.array([0.0, 0.0, 1.0, 1.0, 1.0])
    c = calibration(p, y)
    assert c["rows"] == 4
    assert [b["count"] for b in c["bins"]] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
    assert c["bins"][1]["observed_rate"] == 0.5
    assert c["brier"] == pytest.approx(0.1875)
    assert c["reliability"] == pytest.approx(0.0625)
    assert c["resolution"] == pytest.approx(0.125)
    assert c["uncertainty"] == pytest.approx(0.25)
    # constant forecasts inside each bin: the decomposition is exact
    assert c["reliability"] - c["resolution"] + c["uncertainty"] == pytest.approx(c["brier"])
    assert c["brier_skill"] == pytest.approx(1 - 0.1875 / 0.25)
    assert c["base_rate_source"] == "test"


def test_the_base_rate_to_beat_is_the_one_known_before_the_test() -> None:
    p = np.array([0.6, 0.6, 0.6, 0.6])
    y = np.array([1.0, 1.0, 1.0, 0.0])
    trained = calibration(p, y, base_probability=np.full(4, 0.5))  # the training up-rate
    assert trained["base_rate_source"] == "training"
    assert trained["brier_base_rate"] == pytest.approx(0.25)  # not 0.75 * 0.25, the test's own up-rate's
    assert trained["brier_skill"] == pytest.approx(1 - np.mean((p - y) ** 2) / 0.25)
