"""The promotion gate: a challenger replaces production only when its recorded metrics say it should.

The gate reads model cards, never live models: every decision can be replayed from the store. Rules live in
``training/flows/gate_rules.toml`` (a ``full`` and a ``quick`` set), overridable by a user file holding only the keys
it changes. Against production the gate compares like with like, from the recorded walk-forward metrics (it never
re-evaluates production): the primary metric on the folds both cards share, a fold being shared when it tests the
same period in the same role with the same number of test rows, for the same symbols, target and horizon. So a
challenger trained on a longer snapshot is judged only on the years production was tested on too, and a
challenger trained on another universe or for another target is not compared at all: it is rejected with the
reason, and a deliberate change of universe is a manual promotion (``mlops promote``). Without a production model
the challenger only has to pass the rules against its baselines.

Skill (``skill_over_baseline``, every model but the regime HMM): the Bento serves all six models, so a challenger
without skill over its baseline on the walk-forward test (its card's ``skill``, which tells every client) passes when
production has none either or there is no production; a production version that shows skill is never replaced by a
challenger that does not. A production card older than ``skill`` gets it from its recorded metrics.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from features import DEFAULT_SPEC
from training.evaluation.skill import skill_of_card
from training.evaluation.walk_forward import HIGHER_IS_BETTER
from training.flows.gate_quant import VOLATILITY_MODEL, Check, QuantRules, quant_checks
from training.registry.card import IncompleteCardError, ModelCard, Skill

RULES_FILE = Path(__file__).with_name("gate_rules.toml")

REGIME_MODEL = "regime_hmm"
PROPHET_MODEL = "price_prophet"

#: Where a metric lives in a fold record when the fold has no ``metrics`` table (the regime HMM's refits).
FOLD_FALLBACK_FIELDS = {"label_agreement": "agreement_with_previous"}


class Tolerance(BaseModel):
    """How much worse than production a challenger may be: ``relative * |production| + absolute``."""

    model_config = ConfigDict(extra="forbid")

    relative: float = Field(ge=0)
    absolute: float = Field(0.0, ge=0)
    min_shared_folds: int = Field(1, ge=1)

    def allowed(self, production: float) -> float:
        return self.relative * abs(production) + self.absolute


class RuleSet(QuantRules):
    """The rules of one training mode (those on the quant figures: ``gate_quant.py``)."""

    model_config = ConfigDict(extra="forbid")

    leakage_audit_must_pass: bool = True
    production_skill_must_stay: bool = True
    versus_production: Tolerance
    versus_production_by_model: dict[str, Tolerance] = Field(default_factory=dict)
    volatility_metric: str = "mse"
    volatility_must_beat: list[str] = Field(default_factory=lambda: ["ewma", "garch"])
    regime_min_label_agreement: float = Field(ge=0, le=1)
    prophet_mape_tolerance_vs_random_walk: float = Field(ge=0)

    def tolerance(self, name: str) -> Tolerance:
        return self.versus_production_by_model.get(name, self.versus_production)


class GateRules(BaseModel):
    """Both rule sets, as loaded from the TOML file(s)."""

    model_config = ConfigDict(extra="forbid")

    full: RuleSet
    quick: RuleSet

    def for_mode(self, quick: bool) -> RuleSet:
        return self.quick if quick else self.full


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_rules(override: Path | None = None, defaults: Path = RULES_FILE) -> GateRules:
    """The default rules, with the keys of ``override`` (a TOML file) replacing theirs."""
    data = tomllib.loads(defaults.read_text())
    if override is not None:
        try:
            data = _merge(data, tomllib.loads(Path(override).read_text()))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ValueError(f"cannot read gate rules from {override}: {error}") from error
    return GateRules.model_validate(data)


@dataclass
class Decision:
    """The gate's verdict on one challenger, with every rule it applied."""

    name: str
    challenger: str
    production: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        """What failed, one line per rule."""
        return [f"{c.rule}: {c.detail}" for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "challenger": self.challenger,
            "production": self.production,
            "passed": self.passed,
            "checks": [asdict(c) for c in self.checks],
        }


def gate(
    challenger_tag: str,
    challenger_metadata: dict[str, Any],
    rules: RuleSet,
    production_tag: str | None = None,
    production_metadata: dict[str, Any] | None = None,
) -> Decision:
    """Apply every rule to a challenger (its BentoML metadata is its card) and production's card if any."""
    name = challenger_tag.split(":")[0]
    decision = Decision(name, challenger_tag, production_tag)
    try:
        card = ModelCard.from_metadata(challenger_metadata)
    except IncompleteCardError as error:
        decision.checks.append(Check("card_complete", False, str(error)))
        return decision
    decision.checks.append(Check("card_complete", True, "every field of the model card is present"))
    decision.checks.append(check_feature_spec(card))
    if rules.leakage_audit_must_pass:
        decision.checks.append(check_leakage_audit(card))
    if name == VOLATILITY_MODEL:
        decision.checks.append(check_volatility_baselines(card, rules))
    elif name == REGIME_MODEL:
        decision.checks.append(check_regime_agreement(card, rules))
    elif name == PROPHET_MODEL:
        decision.checks.append(check_prophet_random_walk(card, rules))
    decision.checks.extend(quant_checks(name, card.quant, rules))
    if card.skill is not None:
        decision.checks.append(check_skill(card.skill, rules, production_tag, production_metadata))
    if production_tag is not None:
        decision.checks.append(check_versus_production(card, production_tag, production_metadata or {}, rules))
    return decision


def with_skill(metadata: dict[str, Any]) -> dict[str, Any]:
    """A stored card as the gate reads it: one written before cards had ``skill`` gets it from its metrics."""
    skill = None if "skill" in metadata else skill_of_card(metadata)
    return metadata if skill is None else {**metadata, "skill": skill}


def check_feature_spec(card: ModelCard) -> Check:
    spec = DEFAULT_SPEC
    same = (
        card.feature_spec_hash == spec.version_hash
        and card.feature_names == list(spec.names)
        and card.lookback == spec.lookback
    )
    if same:
        return Check("feature_spec", True, f"FeatureSpec {spec.version_hash} matches the code")
    return Check(
        "feature_spec",
        False,
        f"trained with FeatureSpec {card.feature_spec_hash} ({len(card.feature_names)} features, lookback "
        f"{card.lookback}); the code computes {spec.version_hash} ({len(spec.names)} features, lookback "
        f"{spec.lookback}): the service would refuse it",
    )


def check_leakage_audit(card: ModelCard) -> Check:
    audit = card.leakage_audit
    if audit.get("passed", False):
        return Check("leakage_audit", True, "passed" if audit.get("checked", True) else "not applicable to the task")
    findings = "; ".join(str(f) for f in audit.get("findings", [])) or "failed"
    return Check("leakage_audit", False, f"suspected look-ahead: {findings}")


def _better(ours: float, theirs: float, metric: str, card: ModelCard) -> bool:
    higher = card.higher_is_better if metric == card.primary_metric else metric in HIGHER_IS_BETTER
    return ours > theirs if higher else ours < theirs


def check_volatility_baselines(card: ModelCard, rules: RuleSet) -> Check:
    metric = rules.volatility_metric
    ours = card.metrics.get(metric)
    if ours is None or not math.isfinite(ours):
        return Check("beats_baselines", False, f"the card has no finite {metric}")
    missing = [b for b in rules.volatility_must_beat if metric not in card.baseline_metrics.get(b, {})]
    if missing:
        return Check("beats_baselines", False, f"the card has no {metric} for the baseline(s) {', '.join(missing)}")
    worse = [b for b in rules.volatility_must_beat if not _better(ours, card.baseline_metrics[b][metric], metric, card)]
    compared = ", ".join(f"{b} {card.baseline_metrics[b][metric]:.5g}" for b in rules.volatility_must_beat)
    if worse:
        return Check("beats_baselines", False, f"{metric} {ours:.5g} does not beat {', '.join(worse)} ({compared})")
    return Check("beats_baselines", True, f"{metric} {ours:.5g} beats {compared}")


def check_regime_agreement(card: ModelCard, rules: RuleSet) -> Check:
    """The floor applies to the regimes the service answers (filtered), not to Viterbi decodes."""
    agreement = card.metrics.get("label_agreement", float("nan"))
    viterbi = card.metrics.get("label_agreement_viterbi", float("nan"))
    floor = rules.regime_min_label_agreement
    passed = math.isfinite(agreement) and agreement >= floor
    aside = f" (Viterbi labels: {viterbi:.3f})" if math.isfinite(viterbi) else ""
    detail = f"served label agreement {agreement:.3f} {'>=' if passed else 'below'} the floor {floor:.3f}{aside}"
    values = {"served": agreement, "floor": floor} | ({"viterbi": viterbi} if aside else {})
    return Check("label_agreement_floor", passed, detail, values)


def check_prophet_random_walk(card: ModelCard, rules: RuleSet) -> Check:
    ours = card.metrics.get("mape", float("nan"))
    walk = card.baseline_metrics.get("random_walk", {}).get("mape", float("nan"))
    if not (math.isfinite(ours) and math.isfinite(walk)):
        return Check("versus_random_walk", False, f"MAPE {ours} or the random walk's {walk} is missing")
    limit = walk * (1 + rules.prophet_mape_tolerance_vs_random_walk)
    passed = ours <= limit
    return Check(
        "versus_random_walk",
        passed,
        f"MAPE {ours:.3f} % vs random walk {walk:.3f} % ({ours / walk - 1:+.1%}; "
        f"at most {rules.prophet_mape_tolerance_vs_random_walk:+.0%} allowed)",
    )


def check_skill(
    ours: Skill, rules: RuleSet, production_tag: str | None, production_metadata: dict[str, Any] | None
) -> Check:
    """A challenger without skill over its baseline passes only if production has none either (or there is none)."""
    rule = "skill_over_baseline"
    values = {"shown": float(ours.shown), "challenger": ours.model, "baseline": ours.baseline_value}
    if ours.shown:
        return Check(rule, True, ours.statement, values)
    if production_tag is None:
        return Check(
            rule,
            True,
            f"{ours.statement}; promoted all the same, there being no production model (the Bento serves all six "
            "models) and its card says so to every client",
            values,
        )
    production = _skill_of(production_metadata or {})
    if production is None:
        return Check(rule, True, f"{ours.statement}; production {production_tag} has no usable card to compare", values)
    values["production_shown"] = float(production.shown)
    if not production.shown:
        return Check(
            rule,
            True,
            f"{ours.statement}; production {production_tag} showed none either ({production.statement}), and the "
            "Bento serves all six models",
            values,
        )
    kept = rules.production_skill_must_stay
    why = "a model that shows skill is not replaced by one that does not" if kept else "allowed by the rules"
    return Check(
        rule,
        not kept,
        f"{ours.statement}, while production {production_tag} showed skill ({production.statement}): {why}",
        values,
    )


def _skill_of(metadata: dict[str, Any]) -> Skill | None:
    try:
        return ModelCard.from_metadata(with_skill(metadata)).skill
    except IncompleteCardError:
        return None


def fold_key(fold: dict[str, Any]) -> tuple[str, str, str]:
    """Folds are the same window when they test the same period in the same role (the HMM's final refit
    reports the same year as its last yearly one)."""
    return (str(fold.get("role", "yearly")), str(fold.get("test_start")), str(fold.get("test_end")))


def fold_value(fold: dict[str, Any], metric: str) -> float | None:
    value = fold.get("metrics", {}).get(metric)
    if value is None and metric in FOLD_FALLBACK_FIELDS:
        value = fold.get(FOLD_FALLBACK_FIELDS[metric])
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def shared_folds(
    challenger: dict[str, Any], production: dict[str, Any], metric: str
) -> tuple[list[tuple[str, float, float]], list[str]]:
    """(period, challenger value, production value) for every fold both walk-forwards share, and the periods
    left out with why."""
    theirs = {fold_key(f): f for f in production.get("walk_forward", {}).get("per_fold", [])}
    pairs, skipped = [], []
    for fold in challenger.get("walk_forward", {}).get("per_fold", []):
        key = fold_key(fold)
        period = f"{key[1]}..{key[2]}" + ("" if key[0] == "yearly" else f" ({key[0]})")
        other = theirs.get(key)
        if other is None:
            continue
        if "n_test" in fold and "n_test" in other and fold["n_test"] != other["n_test"]:
            skipped.append(f"{period}: {fold['n_test']} vs {other['n_test']} test rows")
            continue
        ours, prod = fold_value(fold, metric), fold_value(other, metric)
        if ours is None or prod is None:
            skipped.append(f"{period}: no finite {metric}")
            continue
        pairs.append((period, ours, prod))
    return pairs, skipped


def not_comparable(challenger: ModelCard, production: ModelCard) -> str | None:
    """Why two cards' walk-forward metrics cannot be compared fold by fold (other data or another target)."""
    if sorted(challenger.symbols) != sorted(production.symbols):
        return (
            f"production was evaluated on {', '.join(production.symbols)}, the challenger on "
            f"{', '.join(challenger.symbols)}"
        )
    if (challenger.target, challenger.horizon) != (production.target, production.horizon):
        return (
            f"production predicts {production.target} over {production.horizon} day(s), the challenger "
            f"{challenger.target} over {challenger.horizon}"
        )
    if challenger.primary_metric != production.primary_metric:
        return f"production is judged on {production.primary_metric}, the challenger on {challenger.primary_metric}"
    return None


def check_versus_production(
    card: ModelCard, production_tag: str, production_metadata: dict[str, Any], rules: RuleSet
) -> Check:
    rule = "versus_production"
    try:
        production = ModelCard.from_metadata(with_skill(production_metadata))
    except IncompleteCardError as error:
        return Check(rule, True, f"production {production_tag} has no usable card ({error}); baselines only")
    different = not_comparable(card, production)
    if different:
        return Check(
            rule,
            False,
            f"no walk-forward window in common with production {production_tag}: {different}. If this change is "
            f"deliberate, promote by hand after reading both cards: mlops promote {card.name}:<version>",
        )
    metric = card.primary_metric
    tolerance = rules.tolerance(card.name)
    pairs, skipped = shared_folds(card.model_dump(), production_metadata, metric)
    note = f"; left out: {'; '.join(skipped)}" if skipped else ""
    if len(pairs) < tolerance.min_shared_folds:
        return Check(
            rule,
            False,
            f"{len(pairs)} walk-forward fold(s) shared with production {production_tag}, "
            f"{tolerance.min_shared_folds} needed to compare on the same window{note}",
        )
    ours = sum(p[1] for p in pairs) / len(pairs)
    theirs = sum(p[2] for p in pairs) / len(pairs)
    worse_by = (theirs - ours) if card.higher_is_better else (ours - theirs)
    allowed = tolerance.allowed(theirs)
    passed = worse_by <= allowed
    periods = ", ".join(p[0] for p in pairs)
    verdict = "better than or equal to" if worse_by <= 0 else f"worse by {worse_by:.4g} (allowed {allowed:.4g}) than"
    return Check(
        rule,
        passed,
        f"{metric} {ours:.5g} {verdict} production {theirs:.5g} ({production_tag}), mean over the "
        f"{len(pairs)} shared fold(s) {periods}{note}",
        {"challenger": ours, "production": theirs, "folds": float(len(pairs))},
    )
