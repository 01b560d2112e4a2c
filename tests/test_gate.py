"""The promotion gate, rule by rule, on model cards written for each case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from features import DEFAULT_SPEC
from training.evaluation.skill import skill_record
from training.flows.gate import GateRules, RuleSet, Tolerance, gate, load_rules, shared_folds
from training.registry.card import ModelCard

PRIMARY = {
    "return_lightgbm": ("r2_vs_mean", True, "return_regression"),
    "direction_lightgbm": ("log_loss", False, "direction_classification"),
    "volatility_lightgbm": ("mse", False, "volatility_regression"),
    "price_prophet": ("mape", False, "price_forecast"),
    "regime_hmm": ("label_agreement", True, "regime_detection"),
}


def fold(year: int, value: float, metric: str, n_test: int = 502, **extra: Any) -> dict[str, Any]:
    return {
        "fold": year - 2017,
        "test_start": f"{year}-01-01",
        "test_end": f"{year}-12-31",
        "n_test": n_test,
        "metrics": {metric: value},
        **extra,
    }


def card(
    name: str,
    value: float,
    folds: dict[int, float] | None = None,
    baselines: dict[str, dict[str, float]] | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """The metadata of a stored model: a complete card whose primary metric is ``value`` (per fold: ``folds``)."""
    metric, higher, task = PRIMARY[name]
    per_fold = [fold(year, v, metric) for year, v in (folds or {2017: value, 2018: value}).items()]
    fields: dict[str, Any] = {
        "name": name,
        "task": task,
        "target": "target",
        "horizon": 5,
        "pooled": True,
        "pooling": "pooled",
        "feature_spec_hash": DEFAULT_SPEC.version_hash,
        "feature_names": list(DEFAULT_SPEC.names),
        "lookback": DEFAULT_SPEC.lookback,
        "feature_spec": DEFAULT_SPEC.to_dict(),
        "snapshot_id": "abc",
        "symbols": ["^GSPC", "^IXIC"],
        "date_start": "2010-01-04",
        "date_end": "2018-12-31",
        "primary_metric": metric,
        "higher_is_better": higher,
        "metrics": {metric: value},
        "baseline_metrics": baselines or {},
        "walk_forward": {"folds": len(per_fold), "per_fold": per_fold},
        "leakage_audit": {"passed": True, "findings": [], "checked": task.endswith(("regression", "classification"))},
        "hyperparameters": {},
        "details": {},
        "library_versions": {},
        "git_commit": "unknown",
        "training_seconds": 1.0,
        "created_at": "2024-01-01T00:00:00+00:00",
        **changes,
    }
    if "skill" not in fields:  # what the trainer writes: from the walk-forward metrics (none for the regime HMM)
        fields["skill"] = skill_record(task, fields["metrics"], fields["baseline_metrics"])
    return ModelCard(**fields).to_metadata()


@pytest.fixture(scope="module")
def rules() -> GateRules:
    return load_rules()


def decide(rules: RuleSet, challenger: dict[str, Any], production: dict[str, Any] | None = None) -> Any:
    name = challenger["name"]
    return gate(f"{name}:new", challenger, rules, f"{name}:old" if production else None, production)


def failed(decision: Any) -> dict[str, str]:
    return {c.rule: c.detail for c in decision.checks if not c.passed}


# ----------------------------------------------------------------------------------------------- the rules


def test_default_rules_keep_a_full_and_a_quick_set(rules: GateRules) -> None:
    assert rules.for_mode(quick=False) is rules.full and rules.for_mode(quick=True) is rules.quick
    assert rules.quick.regime_min_label_agreement <= 0.90 < 0.97  # quick mode keeps 2 states, which reach ~0.97
    assert rules.full.regime_min_label_agreement == 0.95
    assert rules.full.regime_order_required and not rules.quick.regime_order_required
    assert rules.full.volatility_must_beat == ["ewma", "garch"] and rules.full.volatility_metric == "mse"
    assert rules.full.tolerance("return_lightgbm") == Tolerance(relative=0.0, absolute=0.005)
    assert rules.full.tolerance("volatility_lightgbm") == rules.full.versus_production


def test_an_override_file_changes_only_the_keys_it_holds(tmp_path: Path, rules: GateRules) -> None:
    override = tmp_path / "rules.toml"
    override.write_text("[quick]\nregime_min_label_agreement = 0.95\n[quick.versus_production]\nrelative = 0.5\n")
    merged = load_rules(override)
    assert merged.quick.regime_min_label_agreement == 0.95
    assert merged.quick.versus_production == Tolerance(relative=0.5, absolute=0.0, min_shared_folds=1)
    assert merged.quick.versus_production_by_model == rules.quick.versus_production_by_model
    assert merged.full == rules.full


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("[quick]\nregime_floor = 0.9\n", "Extra inputs are not permitted"),
        ("[full.versus_production]\nrelative = -0.1\n", "greater than or equal to 0"),
        ("[full]\nregime_min_label_agreement = 1.5\n", "less than or equal to 1"),
    ],
)
def test_bad_rules_are_refused(tmp_path: Path, text: str, complaint: str) -> None:
    override = tmp_path / "rules.toml"
    override.write_text(text)
    with pytest.raises(ValidationError, match=complaint):
        load_rules(override)


def test_an_unreadable_rules_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"cannot read gate rules from .*missing\.toml"):
        load_rules(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[quick\n")
    with pytest.raises(ValueError, match=r"broken\.toml"):
        load_rules(broken)


# ------------------------------------------------------------------------------------- rules on every model


def test_an_incomplete_card_is_rejected_before_anything_else(rules: GateRules) -> None:
    decision = gate("return_lightgbm:new", {"task": "return_regression"}, rules.full)
    assert not decision.passed and [c.rule for c in decision.checks] == ["card_complete"]
    assert "feature_spec_hash" in decision.checks[0].detail


def test_a_feature_spec_other_than_the_codes_is_rejected(rules: GateRules) -> None:
    stale = card("return_lightgbm", -0.01, feature_spec_hash="0123456789abcdef")
    assert "FeatureSpec 0123456789abcdef" in failed(decide(rules.full, stale))["feature_spec"]
    reordered = card("return_lightgbm", -0.01, feature_names=list(reversed(DEFAULT_SPEC.names)))
    assert set(failed(decide(rules.full, reordered))) == {"feature_spec"}


def test_a_failed_leakage_audit_is_rejected_unless_the_rules_say_otherwise(rules: GateRules) -> None:
    audit = {"passed": False, "findings": ["walk-forward AUC 0.700 > 0.58 on a daily direction task"]}
    suspicious = card("direction_lightgbm", 0.69, leakage_audit=audit)
    assert "AUC 0.700" in failed(decide(rules.full, suspicious))["leakage_audit"]
    lenient = rules.full.model_copy(update={"leakage_audit_must_pass": False})
    assert decide(lenient, suspicious).passed


def test_without_production_only_the_baseline_rules_apply(rules: GateRules) -> None:
    decision = decide(rules.full, card("return_lightgbm", -0.2))  # far below the historical mean: honest
    assert decision.passed and decision.production is None
    assert [c.rule for c in decision.checks] == [
        "card_complete",
        "feature_spec",
        "leakage_audit",
        "skill_over_baseline",
    ]


# ------------------------------------------------------------------------------------ model-specific rules


#: What a volatility card's ``quant`` needs for the default rule on IC evidence (training/flows/gate_quant.py).
EVIDENT_IC = {"ic": {"rank": {"mean": 0.6, "ci_low": 0.45, "ci_high": 0.75}}}


def volatility(mse: float, ewma: float = 0.0044, garch: float = 0.0047, **changes: Any) -> dict[str, Any]:
    changes.setdefault("quant", EVIDENT_IC)
    return card("volatility_lightgbm", mse, baselines={"ewma": {"mse": ewma}, "garch": {"mse": garch}}, **changes)


def test_volatility_must_beat_ewma_and_garch_on_mse(rules: GateRules) -> None:
    assert decide(rules.full, volatility(0.0040)).passed
    detail = failed(decide(rules.full, volatility(0.0045)))["beats_baselines"]
    assert detail.startswith("mse 0.0045 does not beat ewma (")
    assert "garch" not in failed(decide(rules.full, volatility(0.0045)))["beats_baselines"].split("(")[0]
    missing = card("volatility_lightgbm", 0.004, baselines={"ewma": {"mse": 0.0044}}, quant=EVIDENT_IC)
    assert "no mse for the baseline(s) garch" in failed(decide(rules.full, missing))["beats_baselines"]


def test_regime_agreement_has_a_floor_lower_in_quick_mode(rules: GateRules) -> None:
    quick_like = card("regime_hmm", 0.917)  # the S&P 500 alone from 2010 in quick mode, with 2 states
    assert decide(rules.quick, quick_like).passed
    assert (
        "label agreement 0.917 below the floor 0.950" in failed(decide(rules.full, quick_like))["label_agreement_floor"]
    )
    # full mode also wants the turbulent regime's next days more volatile than the calm one's, out of sample
    assert "no out-of-sample regime outcomes" in failed(decide(rules.full, card("regime_hmm", 0.986)))["regime_order"]
    ordered = {"by_year": [], "years": 7, "years_compared": 3, "years_turbulent_above_calm": 3}
    outcomes = ordered | {"turbulent_above_calm_every_year": True, "min_days_compared": 5}
    assert decide(rules.full, card("regime_hmm", 0.986, quant=outcomes)).passed


def prophet(mape: float, walk: float) -> dict[str, Any]:
    return card("price_prophet", mape, baselines={"random_walk": {"mape": walk}})


def test_prophet_may_trail_the_random_walk_by_the_tolerance_only(rules: GateRules) -> None:
    assert decide(rules.full, prophet(2.60, 2.47)).passed  # the full mode's result: 5 % worse
    detail = failed(decide(rules.full, prophet(2.80, 2.47)))["versus_random_walk"]
    assert detail == "MAPE 2.800 % vs random walk 2.470 % (+13.4%; at most +10% allowed)"
    assert decide(rules.quick, prophet(2.80, 2.47)).passed  # quick: 15 %


# --------------------------------------------------------------------------------------- versus production


def test_a_challenger_within_tolerance_of_production_passes(rules: GateRules) -> None:
    production = volatility(0.00400)
    assert decide(rules.full, volatility(0.00400), production).passed  # the same model again
    assert decide(rules.full, volatility(0.00407), production).passed  # 1.75 % worse, 2 % allowed
    detail = failed(decide(rules.full, volatility(0.00410), production))["versus_production"]
    assert "mse 0.0041 worse by 0.0001 (allowed 8e-05) than production 0.004" in detail
    assert "2 shared fold(s) 2017-01-01..2017-12-31, 2018-01-01..2018-12-31" in detail


def test_higher_is_better_metrics_compare_the_other_way_with_an_absolute_tolerance(rules: GateRules) -> None:
    production = card("return_lightgbm", -0.010)
    assert decide(rules.full, card("return_lightgbm", -0.014), production).passed  # 0.004 worse, 0.005 allowed
    assert decide(rules.full, card("return_lightgbm", 0.02), production).passed
    assert "versus_production" in failed(decide(rules.full, card("return_lightgbm", -0.016), production))


def test_the_compared_numbers_travel_with_the_check(rules: GateRules) -> None:
    decision = decide(rules.full, volatility(0.0040, folds={2017: 0.0039, 2018: 0.0041}), volatility(0.0042))
    (check,) = [c for c in decision.checks if c.rule == "versus_production"]
    assert check.values == {"challenger": pytest.approx(0.0040), "production": pytest.approx(0.0042), "folds": 2.0}
    assert decision.to_dict()["checks"][-1]["values"] == check.values


@pytest.mark.parametrize(
    ("production_changes", "reason"),
    [
        ({"symbols": ["SPY", "QQQ"]}, "production was evaluated on SPY, QQQ, the challenger on ^GSPC, ^IXIC"),
        ({"horizon": 1}, "production predicts target over 1 day(s), the challenger target over 5"),
    ],
)
def test_production_on_other_data_or_another_target_is_not_the_same_window(
    rules: GateRules, production_changes: dict[str, Any], reason: str
) -> None:
    production = volatility(0.0050, **production_changes)  # worse, and same test years: still not comparable
    detail = failed(decide(rules.full, volatility(0.0040), production))["versus_production"]
    assert detail.startswith("no walk-forward window in common with production volatility_lightgbm:old: " + reason)
    assert "mlops promote volatility_lightgbm:<version>" in detail


def test_the_same_symbols_in_another_order_are_the_same_data(rules: GateRules) -> None:
    production = volatility(0.0040, symbols=["^IXIC", "^GSPC"])
    assert decide(rules.full, volatility(0.0040), production).passed


def test_only_the_folds_both_cards_share_are_compared(rules: GateRules) -> None:
    # production was trained before 2019 existed; its 2016 fold was poor. The challenger adds 2019, also poor.
    production = volatility(0.0040, folds={2016: 0.009, 2017: 0.0040, 2018: 0.0040})
    challenger = volatility(0.0040, folds={2017: 0.0039, 2018: 0.0040, 2019: 0.0090})
    decision = decide(rules.full, challenger, production)
    assert decision.passed
    (check,) = [c for c in decision.checks if c.rule == "versus_production"]
    assert "mean over the 2 shared fold(s) 2017-01-01..2017-12-31, 2018-01-01..2018-12-31" in check.detail


def test_folds_of_the_same_year_with_other_test_rows_are_not_the_same_window() -> None:
    challenger = volatility(0.004)
    production = volatility(0.004)
    production["walk_forward"]["per_fold"][1]["n_test"] = 300  # a partial 2018 in production's snapshot
    pairs, skipped = shared_folds(challenger, production, "mse")
    assert [p[0] for p in pairs] == ["2017-01-01..2017-12-31"]
    assert skipped == ["2018-01-01..2018-12-31: 502 vs 300 test rows"]


def test_no_shared_fold_means_no_promotion(rules: GateRules) -> None:
    production = volatility(0.0040, folds={2015: 0.0040, 2016: 0.0040})
    detail = failed(decide(rules.full, volatility(0.0030), production))["versus_production"]
    assert "0 walk-forward fold(s) shared with production volatility_lightgbm:old, 1 needed" in detail


def refit(number: int, role: str, year: int, agreement: float) -> dict[str, Any]:
    return {
        "fold": number,
        "role": role,
        "test_start": f"{year}-01-01",
        "test_end": f"{year}-12-31",
        "agreement_with_previous": agreement,
    }


def test_regime_folds_compare_their_agreement_with_the_previous_refit(rules: GateRules) -> None:
    def regime(agreements: list[float]) -> dict[str, Any]:
        folds = [
            refit(0, "yearly", 2017, float("nan")),  # the first refit has no previous one
            refit(1, "yearly", 2018, agreements[0]),
            refit(-1, "final", 2018, agreements[1]),  # the final refit reports the last test year too
        ]
        return card("regime_hmm", sum(agreements) / 2, walk_forward={"folds": 3, "per_fold": folds})

    production = regime([0.95, 0.97])
    pairs, skipped = shared_folds(regime([0.80, 0.90]), production, "label_agreement")
    assert pairs == [
        ("2018-01-01..2018-12-31", 0.80, 0.95),
        ("2018-01-01..2018-12-31 (final)", 0.90, 0.97),
    ]
    assert skipped == ["2017-01-01..2017-12-31: no finite label_agreement"]
    assert "versus_production" in failed(decide(rules.quick, regime([0.80, 0.90]), production))
    assert decide(rules.quick, regime([0.94, 0.96]), production).passed


def test_a_production_card_that_cannot_be_read_leaves_the_baseline_rules(rules: GateRules) -> None:
    decision = gate("volatility_lightgbm:new", volatility(0.004), rules.full, "volatility_lightgbm:old", {})
    assert decision.passed
    (check,) = [c for c in decision.checks if c.rule == "versus_production"]
    assert "has no usable card" in check.detail and "baselines only" in check.detail


def test_a_decision_lists_every_reason_and_serialises(rules: GateRules) -> None:
    challenger = volatility(0.0050, leakage_audit={"passed": False, "findings": ["odd"]})
    decision = decide(rules.full, challenger, volatility(0.0040))
    assert [r.split(":")[0] for r in decision.reasons] == [
        "leakage_audit",
        "beats_baselines",
        "skill_over_baseline",  # production beat EWMA, the challenger does not
        "versus_production",
    ]
    record = decision.to_dict()
    assert record["passed"] is False and record["production"] == "volatility_lightgbm:old"
    assert len(record["checks"]) == 7  # with the default rule on the volatility model's IC evidence
