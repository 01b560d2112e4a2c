"""Every card of a real (quick) training run stores the drift reference the monitor's PSI reads (issue 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import psi
from training.dataset import Panel
from training.evaluation.drift_reference import (
    Reference,
    drift_references,
    feature_references,
    prediction_values,
)
from training.registry.card import ModelCard
from training.run import TrainingRun


def test_every_card_holds_a_reference_per_feature_and_for_its_predictions(
    quick_run: TrainingRun, quick_panel: Panel
) -> None:
    assert len(quick_run.results) == 6
    for result in quick_run.results:
        card = ModelCard.from_metadata(result.card.to_metadata())  # as stored: metadata-safe and read back
        drift = card.drift_reference
        assert drift is not None, result.name
        calendar = {"day_of_week", "month_sin", "month_cos"}
        assert drift["calendar_features"] == sorted(calendar)  # functions of the date: their drift is the season
        assert sorted(drift["features"]) == sorted(set(quick_panel.spec.names) - calendar), result.name
        for name, stored in drift["features"].items():
            ref = Reference.from_dict(stored)
            # the training windows' own PSI: ordered percentiles for every window length, longer windows stray less
            calibration = stored["calibration"]
            assert list(calibration) == ["21", "63", "126", "252"], (result.name, name)
            assert all(0 <= p95 <= p99 for p95, p99 in calibration.values())
            assert calibration["252"][1] <= calibration["21"][1], (result.name, name)
            assert sum(ref.shares) == pytest.approx(1.0) and ref.count == np.isfinite(quick_panel.frame()[name]).sum()
            # the training rows against their own reference: no drift at all
            column = quick_panel.features[:, quick_panel.spec.names.index(name)]
            assert psi(ref, column) == pytest.approx(0.0, abs=1e-12), (result.name, name)
        prediction = Reference.from_dict(drift["predictions"])
        _, values = prediction_values(result.card.task, result.evaluation.predictions)
        if result.card.task == "regime_detection":
            n_states = len(result.fitted.model.state_names)
            assert prediction.edges == tuple(s + 0.5 for s in range(n_states - 1))
            values = values[values >= 0]
        else:
            assert len(prediction.edges) >= 5, result.name  # ten bins unless the predictions tie heavily
        assert psi(prediction, values) == pytest.approx(0.0, abs=1e-12), result.name


def test_prophet_predictions_are_referenced_as_forecast_returns() -> None:
    predictions = pd.DataFrame({"prediction": [110.0, 90.0, 100.0], "baseline_random_walk": [100.0, 100.0, 100.0]})
    what, values = prediction_values("price_forecast", predictions)
    assert "log(forecast / last close)" in what
    assert values == pytest.approx(np.log([1.1, 0.9, 1.0]))
    features = feature_references(np.array([[1.0], [2.0], [3.0]]), ["x"], bins=2)
    drift = drift_references("price_forecast", features, predictions)
    assert drift["predictions"]["count"] == 3 and list(drift["features"]) == ["x"]
