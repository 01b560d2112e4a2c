"""The leakage audit: models trained on shuffled targets fall to their baselines, and leaked futures get caught."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.audit import leakage_audit
from training.models.direction_lightgbm import DirectionLightGBM
from training.models.return_lightgbm import ReturnLightGBM
from training.models.volatility_lightgbm import VolatilityLightGBM

CONFIG = TrainingConfig.quick()


def shuffled(panel: Panel, field: str, seed: int = 7) -> Panel:
    values = getattr(panel, field).copy()
    known = np.flatnonzero(np.isfinite(values))
    values[known] = np.random.default_rng(seed).permutation(values[known])
    return dataclasses.replace(panel, **{field: values})


def leaking(panel: Panel, field: str) -> Panel:
    """A panel whose first feature is replaced by the target itself: the look-ahead bug to catch."""
    features = panel.features.copy()
    target = getattr(panel, field)
    features[:, 0] = np.where(np.isfinite(target), target, 0.0)
    return dataclasses.replace(panel, features=features)


def test_direction_on_shuffled_labels_falls_to_a_coin_flip(quick_panel: Panel) -> None:
    evaluation = DirectionLightGBM(CONFIG).evaluate(shuffled(quick_panel, "direction"))
    assert abs(evaluation.metrics["auc"] - 0.5) < 0.04
    assert evaluation.metrics["log_loss"] >= evaluation.baselines["majority"]["log_loss"] - 0.002
    assert leakage_audit(evaluation)["passed"]


def test_returns_on_shuffled_targets_do_not_beat_the_mean(quick_panel: Panel) -> None:
    evaluation = ReturnLightGBM(CONFIG).evaluate(shuffled(quick_panel, "forward_return"))
    assert evaluation.metrics["r2_vs_mean"] <= 0.005
    assert leakage_audit(evaluation)["passed"]


def test_volatility_on_shuffled_targets_loses_its_signal(quick_panel: Panel) -> None:
    # a model of shuffled vol can only predict the average level: no correlation left, unlike EWMA's
    evaluation = VolatilityLightGBM(CONFIG).evaluate(shuffled(quick_panel, "forward_volatility"))
    assert evaluation.metrics["correlation"] < 0.2
    assert not evaluation.beats("ewma", "correlation")


@pytest.mark.parametrize(("trainer", "field"), [(DirectionLightGBM, "direction"), (ReturnLightGBM, "forward_return")])
def test_a_leaked_target_is_flagged(quick_panel: Panel, trainer: type, field: str) -> None:
    evaluation = trainer(CONFIG).evaluate(leaking(quick_panel, field))
    audit = leakage_audit(evaluation)
    assert not audit["passed"]
    assert audit["findings"]


def test_a_target_shifted_into_the_past_is_learnable_and_flagged(quick_panel: Panel) -> None:
    """Shift the 5-day return target back by its horizon: it becomes the known feature ret_5, and the audit fires."""
    ret_5 = quick_panel.features[:, quick_panel.spec.names.index("ret_5")]
    evaluation = ReturnLightGBM(CONFIG).evaluate(dataclasses.replace(quick_panel, forward_return=ret_5))
    assert evaluation.metrics["r2_vs_mean"] > 0.5
    assert not leakage_audit(evaluation)["passed"]
