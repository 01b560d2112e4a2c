"""Leakage audit: daily direction and return models that look good are first suspected, then believed.

The thresholds sit well above what honest models reach on daily index data (walk-forward AUC ≈ 0.5,
out-of-sample R² ≈ 0; see DESIGN.md), so crossing them means "check for look-ahead before trusting this".
"""

from __future__ import annotations

from typing import Any

from training.evaluation.walk_forward import Evaluation

DIRECTION_MAX_AUC = 0.58
DIRECTION_MAX_ACCURACY_GAIN = 0.03
RETURN_MAX_R2 = 0.03
RETURN_MAX_HIT_RATE = 0.60


def leakage_audit(evaluation: Evaluation) -> dict[str, Any]:
    """Findings that make an evaluation suspicious; ``passed`` is False when there is any."""
    findings: list[str] = []
    m = evaluation.metrics
    if evaluation.task == "direction_classification":
        majority = evaluation.baselines["majority"]["accuracy"]
        if m["auc"] > DIRECTION_MAX_AUC:
            findings.append(f"walk-forward AUC {m['auc']:.3f} > {DIRECTION_MAX_AUC} on a daily direction task")
        if m["accuracy"] - majority > DIRECTION_MAX_ACCURACY_GAIN:
            findings.append(
                f"accuracy {m['accuracy']:.3f} beats the majority class ({majority:.3f}) "
                f"by more than {DIRECTION_MAX_ACCURACY_GAIN:.0%}"
            )
    elif evaluation.task == "return_regression":
        if m["r2_vs_mean"] > RETURN_MAX_R2:
            findings.append(f"out-of-sample R² {m['r2_vs_mean']:.3f} > {RETURN_MAX_R2} on daily-bar returns")
        if m["hit_rate"] > RETURN_MAX_HIT_RATE:
            findings.append(f"sign hit rate {m['hit_rate']:.3f} > {RETURN_MAX_HIT_RATE}")
    return {
        "passed": not findings,
        "findings": findings,
        "checked": evaluation.task in {"direction_classification", "return_regression"},
        "thresholds": {
            "direction_max_auc": DIRECTION_MAX_AUC,
            "direction_max_accuracy_gain": DIRECTION_MAX_ACCURACY_GAIN,
            "return_max_r2": RETURN_MAX_R2,
            "return_max_hit_rate": RETURN_MAX_HIT_RATE,
        },
    }
