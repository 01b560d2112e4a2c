"""The model card: everything needed to use a stored model correctly, kept in its BentoML metadata."""

from __future__ import annotations

import json
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from data.snapshots import SnapshotInfo
from features import FeatureSpec

#: 2: ``skill`` (whether the model beat its baseline on the walk-forward test) on every card of a model with one.
#: 3: ``by_symbol`` (the spread of the walk-forward metric across symbols) and ``synthetic`` (the snapshot's source).
#: 4: ``quant`` (IC with its interval, quantile returns, backtests after costs, calibration, volatility targeting).
#: 5: ``drift_reference`` (bins of every feature and of the predictions, the monitor's PSI reference).
#: 6: the drift reference's tail bins (0.5 % and 99.5 %), the PSI its training windows reached (``calibration``), and
#:    no reference for the calendar features.
#: 7: the regime model's prediction reference has its ``calibration`` too (the monitor acts on its drift).
#: 8: ``quant`` and ``drift_reference`` stored as compact JSON text (:data:`JSON_TEXT_FIELDS`).
#: Cards of versions 1 and 2 still read: without ``by_symbol``, and ``synthetic`` False (no synthetic source then);
#: cards before version 4 without ``quant``, before version 5 without ``drift_reference``.
CARD_VERSION = 8
#: Card fields kept in the metadata as one JSON text each, not as nested YAML: BentoML reads ``model.yaml`` with
#: PyYAML's pure-Python loader whenever it gets or lists a model, and these two (~25 of a card's ~30 KB, thousands
#: of numbers) made that ~80 ms a model against ~20 ms as text (a model load, a worker's or a server's start, and
#: ``mlops models list`` pay it per model). Read back either way: cards before version 8 hold them as mappings.
JSON_TEXT_FIELDS = ("quant", "drift_reference")
#: Tasks whose model has no baseline to show skill over (``training/evaluation/skill.py``): no ``skill`` on the card.
TASKS_WITHOUT_SKILL = frozenset({"regime_detection"})
#: Tasks without a per-symbol figure (``training/evaluation/symbols.py``): no ``by_symbol`` on the card.
TASKS_WITHOUT_SYMBOL_FIGURE = frozenset({"regime_detection"})
#: The snapshot source of a synthetic universe (``mlops data pull --source synthetic``).
SYNTHETIC_SOURCE = "synthetic"
LIBRARIES = ("numpy", "pandas", "scikit-learn", "lightgbm", "prophet", "hmmlearn", "arch", "bentoml")


class Skill(BaseModel):
    """Whether the model beat its strongest baseline on the walk-forward test, and one sentence saying so.

    ``metric`` is the task's skill metric, ``model`` and ``baseline_value`` its walk-forward values (NaN when
    missing), ``baseline`` the strongest baseline's name. The service reads ``shown`` and ``statement`` into every
    answer of the model.
    """

    model_config = ConfigDict(extra="forbid")

    shown: bool
    metric: str
    model: float
    baseline: str
    baseline_value: float
    statement: str


class Spread(BaseModel):
    """One forecast's per-symbol values of a metric: their median and worst decile."""

    model_config = ConfigDict(extra="forbid")

    median: float
    worst_decile: float


class SymbolResult(BaseModel):
    """One symbol's walk-forward metric, the model's and the baseline's, on ``rows`` rows; ``shortfall``: how far
    the model falls behind the baseline (a difference for a higher-is-better metric, ``model / baseline - 1`` for an
    error; negative when it is ahead)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str
    rows: int
    model: float
    baseline: float
    shortfall: float


class SymbolDistribution(BaseModel):
    """The spread across symbols of the primary metric, the model's and its best baseline's on the same rows, so that
    a model that works on a few symbols only shows it (``training/evaluation/symbols.py`` computes it).

    ``worst_decile`` is the ``worst_decile_quantile`` quantile (0.1 of a higher-is-better metric, 0.9 of an error);
    ``beats_baseline_share`` the share of the ``scored`` symbols where the model is strictly better; ``worst`` the
    symbols where it falls furthest behind; ``unscored`` every symbol that could not be scored, with why (fewer than
    ``min_rows`` rows, no finite metric, no prediction). ``symbols`` = ``scored`` + len(``unscored``).
    """

    model_config = ConfigDict(extra="forbid")

    metric: str
    higher_is_better: bool
    baseline: str
    worst_decile_quantile: float
    min_rows: int
    symbols: int
    scored: int
    model: Spread
    baseline_spread: Spread
    beats_baseline_share: float
    worst: list[SymbolResult]
    unscored: dict[str, str]


class ModelCard(BaseModel):
    """The card of DESIGN.md. Every field is required: a model without a complete card cannot be promoted.

    ``skill`` is required of every model with a baseline and absent from the others (the regime HMM's).
    ``by_symbol`` is absent from a card older than version 3 and from the regime HMM's; ``synthetic`` is False on a
    card older than version 3.
    """

    model_config = ConfigDict(extra="forbid")

    card_version: int = CARD_VERSION
    name: str
    task: str
    target: str
    horizon: int
    pooled: bool
    pooling: str
    feature_spec_hash: str
    feature_names: list[str]
    lookback: int
    feature_spec: dict[str, Any]
    snapshot_id: str
    symbols: list[str]
    date_start: str
    date_end: str
    primary_metric: str
    higher_is_better: bool
    metrics: dict[str, float]
    baseline_metrics: dict[str, dict[str, float]]
    walk_forward: dict[str, Any]
    leakage_audit: dict[str, Any]
    hyperparameters: dict[str, Any]
    details: dict[str, Any] = Field(description="Model-specific facts: calibration, states, symbols...")
    library_versions: dict[str, str]
    git_commit: str
    training_seconds: float
    created_at: str
    skill: Skill | None = Field(None, validate_default=True)
    synthetic: bool = Field(False, description="Trained on a synthetic snapshot (scale tests only, never quality)")
    by_symbol: SymbolDistribution | None = Field(None, validate_default=True)
    quant: dict[str, Any] | None = Field(
        None, description="The walk-forward test in a quant's terms (training/evaluation/quant.py); None before v4"
    )
    drift_reference: dict[str, Any] | None = Field(
        None,
        description="Bins of every feature and of the predictions at training, the monitor's PSI reference "
        "(training/evaluation/drift_reference.py); None before v5",
    )

    @field_validator(*JSON_TEXT_FIELDS, mode="before")
    @classmethod
    def _from_json_text(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("skill")
    @classmethod
    def _skill_if_judged_against_a_baseline(cls, skill: Skill | None, info: ValidationInfo) -> Skill | None:
        task = info.data.get("task")
        if task is None:  # the task itself is missing: that is the error to name
            return skill
        if skill is None and task not in TASKS_WITHOUT_SKILL:
            raise ValueError(
                f"missing: a {task} model's card says whether it showed skill over its baseline on the "
                "walk-forward test"
            )
        if skill is not None and task in TASKS_WITHOUT_SKILL:
            raise ValueError(f"a {task} model has no baseline to show skill over: its card has no skill")
        return skill

    @field_validator("by_symbol")
    @classmethod
    def _no_symbol_figure_without_one(
        cls, by_symbol: SymbolDistribution | None, info: ValidationInfo
    ) -> SymbolDistribution | None:
        task = info.data.get("task")
        if by_symbol is not None and task in TASKS_WITHOUT_SYMBOL_FIGURE:
            raise ValueError(f"a {task} model has no per-symbol figure: its card has no by_symbol")
        return by_symbol

    def to_metadata(self) -> dict[str, Any]:
        """The card as BentoML metadata: plain JSON types, no None (BentoML rejects it), the fields of
        :data:`JSON_TEXT_FIELDS` as JSON text."""
        metadata: dict[str, Any] = _metadata_safe(self.model_dump())
        for name in JSON_TEXT_FIELDS:
            if name in metadata:
                metadata[name] = json.dumps(metadata[name], separators=(",", ":"))
        return metadata

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ModelCard:
        """Read a card back; raises :class:`IncompleteCardError` naming every missing or malformed field."""
        try:
            return cls.model_validate(metadata)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
            raise IncompleteCardError(f"model card is incomplete or malformed: {problems}") from error


class IncompleteCardError(ValueError):
    """A stored model's card misses fields or has malformed ones."""


def _metadata_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _metadata_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_metadata_safe(v) for v in value if v is not None]
    if isinstance(value, np.ndarray):
        return _metadata_safe(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(root: Path | None = None) -> str:
    """The checkout's commit, with ``-dirty`` when files differ from it; ``unknown`` outside a git checkout."""
    root = root or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def build_card(
    *,
    trainer: Any,
    evaluation: Any,
    fitted: Any,
    spec: FeatureSpec,
    snapshot: SnapshotInfo,
    panel_dates: np.ndarray,
    audit: dict[str, Any],
    training_seconds: float,
    horizon: int,
    drift_reference: dict[str, Any] | None = None,
) -> ModelCard:
    """Assemble the card of a trained model from its trainer, evaluation and fit (its skill from ``trainer.skill``).

    ``by_symbol`` from ``evaluation.by_symbol``, scored with the trainer's ``score_all`` where it has one (the tabular
    trainers; Prophet's MAPE and the regime HMM's absence are the evaluation's by task).
    """
    folds = evaluation.folds
    return ModelCard(
        name=trainer.name,
        task=trainer.task,
        target=trainer.target,
        horizon=horizon,
        pooled=trainer.pooled,
        pooling=trainer.pooling,
        feature_spec_hash=spec.version_hash,
        feature_names=list(spec.names),
        lookback=spec.lookback,
        feature_spec=spec.to_dict(),
        snapshot_id=snapshot.id,
        symbols=list(snapshot.symbols),
        date_start=str(panel_dates.min()),
        date_end=str(panel_dates.max()),
        primary_metric=evaluation.primary_metric,
        higher_is_better=evaluation.higher_is_better,
        metrics=evaluation.metrics,
        baseline_metrics=evaluation.baselines,
        walk_forward={
            "scheme": "expanding window, yearly refits, training targets overlapping the test year purged",
            "folds": len(folds),
            "test_start": str(folds[0].get("test_start", "")) if folds else "",
            "test_end": str(folds[-1].get("test_end", "")) if folds else "",
            "per_fold": folds,
        },
        leakage_audit=audit,
        hyperparameters=fitted.hyperparameters,
        details=fitted.extra,
        library_versions=library_versions(),
        git_commit=git_commit(),
        training_seconds=round(training_seconds, 3),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        skill=trainer.skill(evaluation),
        synthetic=snapshot.source == SYNTHETIC_SOURCE,
        by_symbol=evaluation.by_symbol(getattr(trainer, "score_all", None), snapshot.symbols),
        quant=evaluation.quant,
        drift_reference=drift_reference,
    )
