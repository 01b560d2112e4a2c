"""Out-of-sample metrics: a model and its baselines are scored on the same rows, and the dropped rows are named."""

from __future__ import annotations

import numpy as np
import pytest

import training.models.volatility_lightgbm as volatility_module
from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.metrics import same_rows, volatility_metrics
from training.models.volatility_lightgbm import VolatilityLightGBM


def test_volatility_forecasts_are_scored_on_the_same_rows() -> None:
    realized = np.array([0.10, 0.20, 0.15, np.nan, 0.30, 0.25])
    model = np.array([0.12, 0.18, 0.16, 0.20, 0.28, 0.26])
    ewma = np.array([np.nan, 0.19, 0.14, 0.20, 0.31, 0.24])  # a warm-up row the model has an answer for
    garch = np.array([0.11, 0.21, 0.0, 0.20, 0.29, 0.27])  # a zero variance: QLIKE would take log(0)
    scores = volatility_metrics(realized, {"model": model, "ewma": ewma, "garch": garch})
    kept = np.array([False, True, False, False, True, True])
    np.testing.assert_array_equal(scores.rows.mask, kept)
    for name, forecast in {"model": model, "ewma": ewma, "garch": garch}.items():
        metrics = scores.metrics[name]
        assert metrics["n"] == 3 and metrics["n_dropped"] == 3
        assert metrics["mse"] == pytest.approx(np.mean((realized[kept] - forecast[kept]) ** 2))
        assert metrics["mae"] == pytest.approx(np.mean(np.abs(realized[kept] - forecast[kept])))
    assert scores.rows.describe() == {
        "n": 3,
        "dropped": 3,
        "why": {
            "the actual is not finite and > 0": 1,
            "the ewma forecast is not finite and > 0": 1,
            "the garch forecast is not finite and > 0": 1,
        },
    }


def test_same_rows_counts_each_reason() -> None:
    rows = same_rows(np.array([1.0, np.nan, 3.0]), {"model": np.array([1.0, 2.0, np.inf])})
    assert rows.n == 1 and rows.n_dropped == 2
    assert rows.dropped == {"the actual is not finite": 1, "the model forecast is not finite": 1}


def test_the_volatility_walk_forward_scores_model_and_baselines_on_the_same_rows(
    quick_panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EWMA without an answer on some test days (a warm-up, a late listing): the model is scored without them too."""
    real_ewma = volatility_module.ewma_volatility

    def ewma_with_gaps(panel: Panel, rows: np.ndarray, trading_days: int = 252) -> np.ndarray:
        values = real_ewma(panel, rows, trading_days)
        values[:20] = np.nan  # the first 20 test rows of every fold
        return values

    monkeypatch.setattr(volatility_module, "ewma_volatility", ewma_with_gaps)
    evaluation = VolatilityLightGBM(TrainingConfig.quick()).evaluate(quick_panel)
    n = evaluation.metrics["n"]
    assert n == evaluation.baselines["ewma"]["n"] == evaluation.baselines["garch"]["n"]
    assert evaluation.metrics["n_dropped"] == 40  # two folds
    assert evaluation.extras["scored_rows"]["why"] == {"the ewma forecast is not finite and > 0": 40}
    frame = evaluation.predictions.dropna()
    assert len(frame) == n
    for name, column in (("ewma", "baseline_ewma"), ("garch", "baseline_garch")):
        expected = np.mean((frame["actual"] - frame[column]) ** 2)
        assert evaluation.baselines[name]["mse"] == pytest.approx(expected)
    assert evaluation.metrics["mse"] == pytest.approx(np.mean((frame["actual"] - frame["prediction"]) ** 2))
    for fold in evaluation.folds:
        assert fold["metrics"]["n"] == fold["baselines"]["ewma"]["n"] == fold["baselines"]["garch"]["n"]


def test_other_tabular_trainers_also_score_on_the_same_rows() -> None:
    """The shared walk-forward scores every tabular model and its baselines on the rows all of them answer."""
    from training.models.return_lightgbm import ReturnLightGBM

    trainer = ReturnLightGBM(TrainingConfig.quick())
    actual = np.array([0.01, -0.02, 0.03, 0.00])
    prediction = np.array([0.0, np.nan, 0.01, 0.0])
    baselines = {"zero": np.zeros(4), "historical_mean": np.full(4, 0.001)}
    scores = trainer.score_all(actual, prediction, baselines)
    assert scores.model["n"] == scores.baselines["zero"]["n"] == scores.baselines["historical_mean"]["n"] == 3
    assert scores.rows.dropped == {"the model forecast is not finite": 1}
