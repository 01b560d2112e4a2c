"""The card's ``skill``: whether a model beat its strongest baseline on the walk-forward test, in one plain sentence."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.test_gate import card
from training.evaluation.skill import NO_SKILL_RECORD, SKILL_METRICS, skill_record
from training.registry.card import TASKS_WITHOUT_SKILL, IncompleteCardError, ModelCard

KEYS = {"shown": bool, "metric": str, "model": float, "baseline": str, "baseline_value": float, "statement": str}


def shaped(record: dict[str, Any] | None) -> dict[str, Any]:
    assert record is not None
    assert list(record) == list(KEYS)
    for key, kind in KEYS.items():
        assert type(record[key]) is kind, (key, record[key])
    return record


def test_returns_are_judged_by_r2_against_the_stronger_of_zero_and_the_historical_mean() -> None:
    baselines = {"zero": {"r2_vs_zero": 0.0}, "historical_mean": {"r2_vs_zero": 0.001}}
    record = shaped(skill_record("return_regression", {"r2_vs_zero": -0.031, "r2_vs_mean": -0.032}, baselines))
    assert record == {
        "shown": False,
        "metric": "r2_vs_zero",
        "model": -0.031,
        "baseline": "historical_mean",
        "baseline_value": 0.001,
        "statement": "no skill over historical_mean on the walk-forward test: R² -0.031 vs 0.001",
    }
    # a historical mean worse than zero: zero is the baseline to beat
    weak_mean = {"zero": {"r2_vs_zero": 0.0}, "historical_mean": {"r2_vs_zero": -0.002}}
    record = shaped(skill_record("return_regression", {"r2_vs_zero": 0.0004}, weak_mean))
    assert record["shown"] and record["baseline"] == "zero"
    assert record["statement"] == "skill over zero on the walk-forward test: R² 0.0004 vs 0.0000"  # digits to tell


def test_direction_is_judged_by_auc_against_the_majority_class() -> None:
    baselines = {"majority": {"auc": 0.5, "accuracy": 0.538, "log_loss": 0.690}}
    worse = skill_record("direction_classification", {"auc": 0.493, "accuracy": 0.54, "log_loss": 0.692}, baselines)
    assert shaped(worse)["statement"] == "no skill over majority on the walk-forward test: AUC 0.493 vs 0.500"
    tie = skill_record("direction_classification", {"auc": 0.5}, baselines)
    assert shaped(tie)["shown"] is False  # a constant P(up) ranks nothing
    better = skill_record("direction_classification", {"auc": 0.52}, baselines)
    assert shaped(better)["shown"] and better is not None and better["metric"] == "auc"
    # the majority class pooled over folds (a different constant each year) ranks years, not days: still 0.5 to beat
    pooled = {"majority": {"auc": 0.468, "accuracy": 0.538}}
    record = shaped(skill_record("direction_classification", {"auc": 0.479}, pooled))
    assert not record["shown"] and record["baseline_value"] == 0.5
    assert record["statement"] == "no skill over majority on the walk-forward test: AUC 0.479 vs 0.500"


def test_volatility_is_judged_against_the_best_of_ewma_and_garch() -> None:
    baselines = {"ewma": {"mse": 0.0049}, "garch": {"mse": 0.0047}}
    record = shaped(skill_record("volatility_regression", {"mse": 0.0048}, baselines))
    assert record["baseline"] == "garch" and not record["shown"]
    assert record["statement"] == "no skill over garch on the walk-forward test: MSE 0.0048 vs 0.0047"
    assert shaped(skill_record("volatility_regression", {"mse": 0.0040}, baselines))["shown"]


def test_prophet_within_the_gate_tolerance_of_the_random_walk_shows_no_skill() -> None:
    walk = {"random_walk": {"mape": 2.47}}
    within = shaped(skill_record("price_forecast", {"mape": 2.60}, walk))  # +5 %: the gate passes it, no skill
    assert within["statement"] == "no skill over random_walk on the walk-forward test: MAPE 2.600 % vs 2.470 %"
    assert shaped(skill_record("price_forecast", {"mape": 2.40}, walk))["shown"]


def test_missing_numbers_are_no_skill_and_say_why() -> None:
    record = shaped(skill_record("volatility_regression", {"mse": float("nan")}, {"ewma": {"mse": 0.004}}))
    assert not record["shown"] and math.isnan(record["model"]) and record["baseline"] == "ewma"
    assert record["statement"] == "no skill shown: the model has no finite MSE on the walk-forward test"
    record = shaped(skill_record("price_forecast", {"mape": 2.0}, {}))
    assert record["statement"] == "no skill shown: no baseline has a finite MAPE on the walk-forward test"
    with pytest.raises(ValueError, match="no skill metric for the task 'weather'"):
        skill_record("weather", {}, {})


def test_the_regime_model_has_no_skill_record() -> None:
    assert skill_record("regime_detection", {"label_agreement": 0.98}, {"volatility_terciles": {}}) is None
    assert NO_SKILL_RECORD == TASKS_WITHOUT_SKILL  # the card's rule and the record's agree
    assert set(SKILL_METRICS) | NO_SKILL_RECORD == {
        "return_regression",
        "direction_classification",
        "volatility_regression",
        "price_forecast",
        "regime_detection",
    }


def test_a_card_without_skill_is_incomplete_and_names_it() -> None:
    metadata = card("volatility_lightgbm", 0.004, baselines={"ewma": {"mse": 0.0044}})
    assert ModelCard.from_metadata(metadata).skill is not None
    del metadata["skill"]
    with pytest.raises(IncompleteCardError, match=r"skill: Value error, missing: a volatility_regression model's card"):
        ModelCard.from_metadata(metadata)
    malformed = {**card("volatility_lightgbm", 0.004), "skill": {"shown": "perhaps"}}
    with pytest.raises(IncompleteCardError, match=r"skill\.shown"):
        ModelCard.from_metadata(malformed)


def test_a_regime_card_has_no_skill_key_and_refuses_one() -> None:
    metadata = card("regime_hmm", 0.98)
    assert "skill" not in metadata
    assert ModelCard.from_metadata(metadata).skill is None
    stray = {**metadata, "skill": skill_record("volatility_regression", {"mse": 0.004}, {"ewma": {"mse": 0.005}})}
    with pytest.raises(IncompleteCardError, match="no baseline to show skill over"):
        ModelCard.from_metadata(stray)
