"""The gate's skill rule: no skill over the baseline passes while production has none, never against one that has."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_gate import card, decide, failed, prophet, volatility
from training.flows.gate import GateRules, load_rules
from training.flows.summary import model_table, summary_markdown


@pytest.fixture(scope="module")
def rules() -> GateRules:
    return load_rules()


def returns(
    r2_vs_zero: float, mean_r2_vs_zero: float = 0.001, primary: float = -0.002, **changes: Any
) -> dict[str, Any]:
    """A return model's card: R² against zero of the model and of the historical mean; ``primary`` is R² vs the mean
    (its folds' too, so that production comparisons pass on the primary metric unless asked otherwise)."""
    baselines = {"zero": {"r2_vs_zero": 0.0}, "historical_mean": {"r2_vs_zero": mean_r2_vs_zero, "r2_vs_mean": 0.0}}
    metrics = {"r2_vs_mean": primary, "r2_vs_zero": r2_vs_zero}
    return card("return_lightgbm", primary, baselines=baselines, metrics=metrics, **changes)


def skill_check(decision: Any) -> Any:
    (check,) = [c for c in decision.checks if c.rule == "skill_over_baseline"]
    return check


def test_a_return_model_below_the_historical_mean_is_promoted_without_production_and_says_so(
    rules: GateRules,
) -> None:
    challenger = returns(-0.031)
    assert challenger["skill"] == {
        "shown": False,
        "metric": "r2_vs_zero",
        "model": -0.031,
        "baseline": "historical_mean",
        "baseline_value": 0.001,
        "statement": "no skill over historical_mean on the walk-forward test: R² -0.031 vs 0.001",
    }
    for rule_set in (rules.full, rules.quick):
        decision = decide(rule_set, challenger)
        assert decision.passed
        check = skill_check(decision)
        assert check.passed and check.values["shown"] == 0.0
        assert check.detail.startswith("no skill over historical_mean on the walk-forward test: R² -0.031 vs 0.001; ")
        assert "no production model" in check.detail


def test_a_production_model_with_skill_is_never_replaced_by_one_without(rules: GateRules) -> None:
    production = returns(0.004)  # beat the historical mean's 0.001
    challenger = returns(-0.031)  # the same on the primary metric's folds: only skill tells them apart
    for rule_set in (rules.full, rules.quick):
        decision = decide(rule_set, challenger, production)
        assert set(failed(decision)) == {"skill_over_baseline"}
        detail = failed(decision)["skill_over_baseline"]
        assert "no skill over historical_mean on the walk-forward test: R² -0.031 vs 0.001" in detail
        assert "production return_lightgbm:old showed skill (skill over historical_mean" in detail
    lenient = rules.full.model_copy(update={"production_skill_must_stay": False})
    assert decide(lenient, challenger, production).passed


def test_without_skill_on_either_side_the_challenger_passes_and_with_skill_it_always_does(rules: GateRules) -> None:
    decision = decide(rules.full, returns(-0.031), returns(-0.010))
    assert decision.passed
    assert "production return_lightgbm:old showed none either (no skill over" in skill_check(decision).detail
    decision = decide(rules.full, returns(0.004), returns(0.006))
    assert skill_check(decision).passed and skill_check(decision).detail.startswith("skill over historical_mean")


def test_a_production_card_older_than_the_skill_field_gets_it_from_its_metrics(rules: GateRules) -> None:
    production = returns(0.004)
    del production["skill"]
    production["card_version"] = 1
    decision = decide(rules.full, returns(-0.031), production)
    assert set(failed(decision)) == {"skill_over_baseline"}  # and versus_production still compared the folds
    (versus,) = [c for c in decision.checks if c.rule == "versus_production"]
    assert versus.values["folds"] == 2.0


def test_every_task_with_a_baseline_is_checked_for_skill(rules: GateRules) -> None:
    unskilled = {
        "direction_lightgbm": card(
            "direction_lightgbm", 0.69, baselines={"majority": {"auc": 0.5, "log_loss": 0.69}}, metrics={"auc": 0.49}
        ),
        "volatility_lightgbm": volatility(0.0045),  # beats neither EWMA nor GARCH
        "price_prophet": prophet(2.60, 2.47),  # within the gate's tolerance, but no better than the random walk
    }
    for name, challenger in unskilled.items():
        check = skill_check(decide(rules.full, challenger))
        assert check.passed and check.detail.startswith("no skill over"), (name, check.detail)
    assert skill_check(decide(rules.full, volatility(0.0040))).detail == (
        "skill over ewma on the walk-forward test: MSE 0.004 vs 0.0044"
    )
    regime = decide(rules.full, card("regime_hmm", 0.986))
    assert "skill" not in card("regime_hmm", 0.986)
    assert "skill_over_baseline" not in [c.rule for c in regime.checks]


def test_the_summary_shows_the_skill_rule_and_statement(rules: GateRules, monkeypatch: pytest.MonkeyPatch) -> None:
    import training.flows.summary as summary_module

    challenger = returns(-0.031)
    decision = decide(rules.full, challenger)
    monkeypatch.setattr(summary_module, "stored_metadata", lambda tag: challenger if tag else None)
    summary = {
        "flow_run": "run",
        "mode": "full",
        "rules": "gate_rules.toml",
        "ok": True,
        "failures": [],
        "models": {"return_lightgbm": {"status": "trained", "tag": "return_lightgbm:new"}},
        "gate": {"return_lightgbm": decision.to_dict()},
        "production_before": {},
        "promoted": {"return_lightgbm": "return_lightgbm:new"},
        "rejected": {},
        "rolled_back": {},
        "bento": None,
    }
    (row,) = model_table(summary)
    assert row["skill"] == "no skill over historical_mean on the walk-forward test: R² -0.031 vs 0.001"
    text = summary_markdown(summary)
    assert "`return_lightgbm:new` vs `no production`: pass, without skill over its baseline" in text
    assert "  - ok skill_over_baseline: no skill over historical_mean on the walk-forward test" in text


def test_the_rules_keep_production_skill_in_both_modes(rules: GateRules) -> None:
    assert rules.full.production_skill_must_stay and rules.quick.production_skill_must_stay
