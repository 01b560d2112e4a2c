"""The gate's rules on the quant figures of a card (``quant``, ``training/evaluation/quant.py``), and the ``Check``
record every rule of the gate gives.

Two rules are lists of model names, empty meaning off, one a switch:

* ``ic_evidence_required``: the model's rank IC must show positive evidence (its 95 % HAC interval above zero).
* ``vol_targeting_must_beat``: the volatility model's targeting book must track the target more closely (a smaller
  root mean square distance of the realised volatility, per symbol and year) than the books run on these baseline
  forecasts (``ewma``, ``garch``).
* ``regime_order_required``: out of sample, the most turbulent regime served must be followed by more volatile days
  than the calmest one in every test year in which both were served (``training/evaluation/regimes.py``), and in at
  least one year.

A card written before ``quant`` (version 4) fails a rule that applies to it: the gate cannot tell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

VOLATILITY_MODEL = "volatility_lightgbm"
REGIME_MODEL = "regime_hmm"


@dataclass(frozen=True)
class Check:
    """One rule applied to one challenger."""

    rule: str
    passed: bool
    detail: str
    values: dict[str, float] = field(default_factory=dict)  # the numbers compared, for tables


class QuantRules(BaseModel):
    """The rule set's fields for the quant figures (a part of ``gate.RuleSet``)."""

    ic_evidence_required: list[str] = Field(default_factory=list)
    vol_targeting_must_beat: list[str] = Field(default_factory=list)
    regime_order_required: bool = False


def quant_checks(name: str, quant: dict[str, Any] | None, rules: QuantRules) -> list[Check]:
    """The checks of the rules that apply to model ``name`` whose card's ``quant`` is ``quant``."""
    checks = []
    if name in rules.ic_evidence_required:
        checks.append(check_ic_evidence(quant))
    if name == VOLATILITY_MODEL and rules.vol_targeting_must_beat:
        checks.append(check_vol_targeting(quant, rules.vol_targeting_must_beat))
    if name == REGIME_MODEL and rules.regime_order_required:
        checks.append(check_regime_order(quant))
    return checks


def check_ic_evidence(quant: dict[str, Any] | None) -> Check:
    rank = (quant or {}).get("ic", {}).get("rank")
    if not rank:
        return Check("ic_evidence", False, "the card has no rank IC (written before quant figures, or no forecast)")
    low, mean, high = rank["ci_low"], rank["mean"], rank["ci_high"]
    passed = math.isfinite(low) and low > 0
    where = "above zero" if passed else "covers zero or lies below it: no evidence of skill"
    values = {"mean": mean, "ci_low": low, "ci_high": high}
    return Check("ic_evidence", passed, f"rank IC {mean:.4f}, 95 % interval [{low:.4f}, {high:.4f}] {where}", values)


def check_vol_targeting(quant: dict[str, Any] | None, baselines: list[str]) -> Check:
    books = (quant or {}).get("vol_targeting", {}).get("forecasts", {})
    missing = [b for b in ["model", *baselines] if b not in books]
    if missing:
        return Check("vol_targeting", False, f"the card has no volatility-targeting book for {', '.join(missing)}")
    rmse = {name: books[name]["tracking_rmse"] for name in ["model", *baselines]}
    worse = [b for b in baselines if not rmse["model"] < rmse[b]]
    compared = ", ".join(f"{b} {rmse[b]:.4f}" for b in baselines)
    verdict = f"does not beat {', '.join(worse)}" if worse else "beats"
    detail = f"tracking error of the targeted volatility {rmse['model']:.4f} {verdict} ({compared})"
    return Check("vol_targeting", not worse, detail, rmse)


def check_regime_order(quant: dict[str, Any] | None) -> Check:
    if not quant or "by_year" not in quant:
        return Check("regime_order", False, "the card has no out-of-sample regime outcomes (written before them)")
    compared, ordered = quant["years_compared"], quant["years_turbulent_above_calm"]
    values = {"years": float(quant["years"]), "compared": float(compared), "ordered": float(ordered)}
    if not compared:
        detail = f"no test year served both extreme regimes on {quant['min_days_compared']} days or more: cannot tell"
        return Check("regime_order", False, detail, values)
    passed = bool(quant["turbulent_above_calm_every_year"])
    detail = (
        f"the turbulent regime's next days were more volatile than the calm one's in {ordered} of {compared} "
        f"compared test years (of {quant['years']})"
    )
    return Check("regime_order", passed, detail, values)
