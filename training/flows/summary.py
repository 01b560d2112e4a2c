"""What a retrain run did, step by step, and how it is shown: the summary, its table, its Prefect artifacts.

The flow fills a :class:`RunRecord` as it goes and returns it as a plain dict (the summary). The same summary makes
the Prefect artifacts (a table of every model against production and its best baseline, the gate's decisions with
the Bento tag, a link to the training report) and what ``mlops retrain run`` prints.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from training.registry.store import get_model

TABLE_KEY = "retrain-models"
SUMMARY_KEY = "retrain-summary"
REPORT_KEY = "retrain-report"
LISTED_FINDINGS = 20


class RetrainFailed(RuntimeError):
    """The run failed at a step that matters; ``summary`` says what happened at every step."""

    def __init__(self, message: str, summary: dict[str, Any]):
        super().__init__(message)
        self.summary = summary

    def __reduce__(self) -> tuple[Any, ...]:
        return (RetrainFailed, (str(self), self.summary))  # picklable, if Prefect persists the failed state


@dataclass
class RunRecord:
    """What a run did at every step; returned as a dict and shown in the artifacts."""

    flow_run: str
    mode: str
    rules: str
    #: What started the run: "asked for", or the monitor's alert rules that held (``monitoring/trigger.py``).
    trigger: str = "asked for"
    snapshot: dict[str, Any] | None = None
    pull: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    gate: dict[str, dict[str, Any]] = field(default_factory=dict)
    production_before: dict[str, str] = field(default_factory=dict)
    promoted: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    rolled_back: dict[str, str] = field(default_factory=dict)
    lock: dict[str, Any] | None = None
    bento: str | None = None
    smoke_test: dict[str, Any] | None = None
    #: The OCI image of the Bento (``containerize=True``): its reference, size, build and smoke-test figures.
    image: dict[str, Any] | None = None
    #: What the store prune removed and freed (``prune_keep``), or None when it did not run.
    prune: dict[str, Any] | None = None
    #: This run's training report, or else the report of the run that trained the models it reused.
    report: str | None = None
    report_of_this_run: bool = False
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a step into ``seconds``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - started, 2)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": not self.failures}


def stored_metadata(tag: str | None) -> dict[str, Any] | None:
    """A stored model's metadata (its card); ``{}`` if the store no longer has it, None for no tag."""
    if tag is None:
        return None
    try:
        return get_model(tag).metadata
    except LookupError:
        return {}


def headline(metadata: dict[str, Any] | None) -> tuple[str, float | None, str, float | None]:
    """(primary metric, its value over the model's walk-forward, best baseline, its value) from a card."""
    if not metadata or "primary_metric" not in metadata:
        return "", None, "", None
    metric = str(metadata["primary_metric"])
    value = metadata.get("metrics", {}).get(metric)
    baselines = {b: m[metric] for b, m in metadata.get("baseline_metrics", {}).items() if metric in m}
    if not baselines:
        return metric, value, "", None
    best = (max if metadata.get("higher_is_better") else min)(baselines, key=lambda b: baselines[b])
    return metric, value, best, baselines[best]


def skill_of(metadata: dict[str, Any] | None) -> str:
    """The card's one-sentence skill statement; "-" for a model without a baseline (the regime HMM) or no card."""
    skill = (metadata or {}).get("skill")
    return str(skill.get("statement", "-")) if isinstance(skill, dict) else "-"


def decision_of(name: str, summary: dict[str, Any]) -> str:
    """What became of a model's challenger in this run, in a few words."""
    outcome, gate_record = summary["models"][name], summary["gate"].get(name, {})
    if outcome["status"] == "failed":
        return "training failed"
    if gate_record.get("unchanged"):
        return "already production"
    if name in summary["rolled_back"]:
        return "promoted, rolled back"
    if name in summary["promoted"]:
        return "promoted"
    if name in summary["rejected"]:
        return "rejected"
    return "passed, not promoted" if gate_record.get("passed") else "not gated"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def model_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model: the challenger's metric, its best baseline's, whether it showed skill over it, production's
    on the same walk-forward folds (the gate's comparison), and what became of it."""
    rows = []
    for name, outcome in summary["models"].items():
        gate_record = summary["gate"].get(name, {})
        tag = outcome.get("tag")
        production = gate_record.get("production") or summary["production_before"].get(name)
        metadata = stored_metadata(tag)
        metric, value, baseline, baseline_value = headline(metadata)
        checks = gate_record.get("checks", [])
        compared: dict[str, float] = next((c["values"] for c in checks if c["rule"] == "versus_production"), {})
        reasons = [f"{c['rule']}: {c['detail']}" for c in checks if not c["passed"]]
        rows.append(
            {
                "model": name,
                "challenger": tag or "-",
                "origin": outcome["status"],
                "metric": metric,
                "challenger value": _rounded(value),
                "best baseline": baseline,
                "baseline value": _rounded(baseline_value),
                "skill": skill_of(metadata),
                "production": production or "-",
                "challenger on shared folds": _rounded(compared.get("challenger")),
                "production on shared folds": _rounded(compared.get("production")),
                "shared folds": int(compared["folds"]) if "folds" in compared else None,
                "decision": decision_of(name, summary),
                "why": "; ".join(reasons) or outcome.get("error", ""),
            }
        )
    return rows


def _failure_lines(failure: str) -> list[str]:
    first, *rest = failure.splitlines()
    lines = [f"- **failed**: {first}"]
    if rest:
        lines += ["", "  ```", *(f"  {line}" for line in rest), "  ```", ""]
    return lines


def _data_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    snap = summary.get("snapshot")
    if snap:
        lines.append(
            f"- snapshot `{snap['id']}` ({snap['source']}: {', '.join(snap['symbols'])}, "
            f"{snap['start']}..{snap['end']})"
        )
    pulled = summary.get("pull") or {}
    if pulled.get("fallback"):
        lines.append(
            f"- **pull failed**, trained on the latest snapshot of the same symbols `{pulled['fallback']}` as asked "
            f"(--use-cached-on-failure): {pulled['error'].splitlines()[0]}"
        )
    validation = summary.get("validation") or {}
    if validation:
        lines.append(
            f"- validation: {'usable' if validation['usable'] else 'UNUSABLE'}, {len(validation['errors'])} "
            f"error(s), {len(validation['warnings'])} warning(s)"
        )
    if validation.get("usable"):  # an unusable snapshot's findings are the failure, listed above in full
        warnings = validation["warnings"]
        for finding in warnings[:LISTED_FINDINGS]:
            where = ", ".join(x for x in (finding["symbol"], finding["date"]) if x)
            lines.append(f"  - warning [{finding['check']}] {where}: {finding['message']}")
        if len(warnings) > LISTED_FINDINGS:
            lines.append(f"  - ... and {len(warnings) - LISTED_FINDINGS} more")
    return lines


def _lock_lines(summary: dict[str, Any]) -> list[str]:
    lock = summary.get("lock") or {}
    if lock.get("held_by"):
        return [
            f"- waited {lock['waited_seconds']} s for the promotion lock: another run held it "
            f"({lock['held_by']}), and this run gated against what that run left in production"
        ]
    return []


def _bento_lines(summary: dict[str, Any]) -> list[str]:
    smoke = summary.get("smoke_test")
    if summary["bento"]:
        tested = f"every method answered, ready in {smoke['ready_seconds']} s" if smoke else "FAILED, do not serve it"
        lines = [f"- Bento `{summary['bento']}`: smoke test {tested}"]
    elif summary["promoted"]:
        lines = ["- Bento: none built (the build failed)"]
    else:
        lines = ["- Bento: none built (nothing promoted, production unchanged)"]
    if image := summary.get("image"):
        lines.append(
            f"- image `{image['image']}` ({image['size_bytes'] / 2**20:.0f} MiB, {image['backend']}): every method "
            f"answered, ready in {image['smoke_test']['ready_seconds']} s"
        )
    if summary["rolled_back"]:
        restored = ", ".join(f"{n} -> {t}" for n, t in summary["rolled_back"].items())
        lines.append(f"- rolled back to the production of before this run: {restored}")
    return lines


def _report_lines(summary: dict[str, Any]) -> list[str]:
    report = summary.get("report")
    if not report:
        return ["- training report: none (no model was trained or reused)"]
    whose = "this run" if summary.get("report_of_this_run") else "the run that trained the reused models"
    return [f"- training report ({whose}): `{report}`"]  # the link artifact is the clickable one


def _gate_lines(summary: dict[str, Any]) -> list[str]:
    lines = ["", f"## Gate decisions (rules: {summary['rules']})", ""]
    if not summary["gate"]:
        lines.append("- nothing was gated")
    for name, decision in summary["gate"].items():
        if decision.get("unchanged"):
            lines.append(f"- **{name}**: `{decision['challenger']}` is already production")
            continue
        verdict = "pass" if decision["passed"] else "REJECT"
        against = decision["production"] or "no production"
        skill = next((c for c in decision["checks"] if c["rule"] == "skill_over_baseline"), None)
        if decision["passed"] and skill is not None and not skill["values"].get("shown", 1.0):
            verdict = "pass, without skill over its baseline"
        lines.append(f"- **{name}** `{decision['challenger']}` vs `{against}`: {verdict}")
        lines += [f"  - {'ok' if c['passed'] else 'FAIL'} {c['rule']}: {c['detail']}" for c in decision["checks"]]
    return lines


def summary_markdown(summary: dict[str, Any]) -> str:
    """The run as Markdown: what failed (in full), the data, the lock, the Bento, the report, the gate."""
    verdict = "ok" if summary["ok"] else "FAILED"
    lines = [f"# Retrain {summary['flow_run']} ({summary['mode']} mode): {verdict}", ""]
    lines += [f"Triggered by: {summary.get('trigger', 'asked for')}", ""]
    for failure in summary["failures"]:
        lines += _failure_lines(failure)
    lines += _data_lines(summary) + _lock_lines(summary) + _bento_lines(summary) + _report_lines(summary)
    return "\n".join(lines + _gate_lines(summary))


def publish_artifacts(summary: dict[str, Any]) -> None:
    """The run's story as Prefect artifacts: the model table, the decisions with the Bento, the report's link."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

    if summary["models"]:
        create_table_artifact(
            model_table(summary), key=TABLE_KEY, description="Challengers against production and baselines"
        )
    create_markdown_artifact(summary_markdown(summary), key=SUMMARY_KEY, description="What the run did")
    if summary.get("report"):
        create_link_artifact(
            f"file://{summary['report']}", link_text="training report", key=REPORT_KEY, description="HTML report"
        )
