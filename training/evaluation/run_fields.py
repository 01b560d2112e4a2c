"""What the training report reads of a run: the fields it needs, named as protocols.

``training.run``'s TrainingRun and ModelResult (and the card of ``training/registry/card.py``) have this shape; the
report sits with the evaluation, below the run that writes it and the registry that holds the card, so it names the
fields it needs instead of importing their types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from training.evaluation.walk_forward import Evaluation

if TYPE_CHECKING:
    from data.snapshots import SnapshotInfo
    from training.config import TrainingConfig


class SkillFields(Protocol):
    @property
    def shown(self) -> bool: ...

    @property
    def statement(self) -> str: ...


class SpreadFields(Protocol):
    @property
    def median(self) -> float: ...

    @property
    def worst_decile(self) -> float: ...


class SymbolFields(Protocol):
    @property
    def symbol(self) -> str: ...

    @property
    def model(self) -> float: ...

    @property
    def baseline(self) -> float: ...


class DistributionFields(Protocol):
    """The card's ``by_symbol`` (``training/registry/card.py``: SymbolDistribution)."""

    @property
    def metric(self) -> str: ...

    @property
    def baseline(self) -> str: ...

    @property
    def worst_decile_quantile(self) -> float: ...

    @property
    def symbols(self) -> int: ...

    @property
    def scored(self) -> int: ...

    @property
    def model(self) -> SpreadFields: ...

    @property
    def baseline_spread(self) -> SpreadFields: ...

    @property
    def beats_baseline_share(self) -> float: ...

    @property
    def worst(self) -> Sequence[SymbolFields]: ...

    @property
    def unscored(self) -> Mapping[str, str]: ...

    def model_dump(self) -> dict[str, Any]: ...


class CardFields(Protocol):
    @property
    def skill(self) -> SkillFields | None: ...

    @property
    def by_symbol(self) -> DistributionFields | None: ...

    leakage_audit: dict[str, Any]
    target: str
    horizon: int
    pooling: str
    walk_forward: dict[str, Any]
    symbols: list[str]
    synthetic: bool


class FittedFields(Protocol):
    extra: dict[str, Any]
    report: dict[str, Any]


class ModelResult(Protocol):
    name: str
    tag: str
    evaluation: Evaluation
    evaluate_seconds: float
    fit_seconds: float

    @property
    def card(self) -> CardFields: ...

    @property
    def fitted(self) -> FittedFields: ...


class TrainingRun(Protocol):
    run_id: str
    snapshot: SnapshotInfo
    config: TrainingConfig

    @property
    def failures(self) -> Mapping[str, str]: ...

    @property
    def results(self) -> Sequence[ModelResult]: ...
