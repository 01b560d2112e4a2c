"""Training settings: horizons, the walk-forward design and model sizes, with a quick mode for tests."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

#: Most panel rows one fit of a pooled tabular model trains on; a fold or final fit with more takes a seeded uniform
#: sample of this many (``training/models/trainer.py``; the card records it). See ``training/dataset.py`` for the
#: memory per row this bounds. None: no limit.
MAX_TRAINING_ROWS = 8_000_000
#: Most rows one tree of the random forest grows on (its bootstrap sample: scikit-learn's ``max_samples``). Below it
#: every tree draws as many rows as it is given, as scikit-learn's default does, so no forest trained on fewer rows
#: changes; past it a tree's cost stops growing with the rows (``training/models/return_random_forest.py``).
RF_TREE_ROWS = 1_000_000


@dataclass(frozen=True)
class TrainingConfig:
    """What every trainer reads. ``quick()`` shrinks models and the evaluation so the test tier stays fast."""

    horizon: int = 5
    test_years: int = 7
    first_date: str | None = None
    seed: int = 0
    lgbm_rounds: int = 300
    lgbm_learning_rate: float = 0.03
    lgbm_leaves: int = 15
    lgbm_min_child_samples: int = 200
    rf_trees: int = 200
    rf_max_depth: int = 8
    rf_min_samples_leaf: int = 50
    rf_tree_rows: int | None = RF_TREE_ROWS
    calibration_fraction: float = 0.2
    #: The most regime states tried: the walk-forward keeps the most states whose independent refits serve the same
    #: regimes on at least ``hmm_min_agreement`` of shared days, trying one state fewer while they do not (down to
    #: 2; ``training/models/regime_hmm.py`` has the measurements behind the rule).
    hmm_states: int = 3
    hmm_min_agreement: float = 0.95
    hmm_restarts: int = 5
    hmm_iterations: int = 200
    prophet_forecast_days: int = 30
    prophet_origin_step: int = 21
    max_training_rows: int | None = MAX_TRAINING_ROWS
    #: Train the tabular models (every fold and the final fit) on their last this many years only: how a short
    #: history behaves, measured on a long one (``benchmarks/bench_short_history.py``). None: every year.
    train_years: int | None = None
    quick_mode: bool = False

    @classmethod
    def quick(cls, **overrides: Any) -> TrainingConfig:
        """Small models on 2010-2018 with two test years: the same code paths in a fraction of the time."""
        quick = cls(
            test_years=2,
            first_date="2010-01-01",
            lgbm_rounds=60,
            lgbm_learning_rate=0.08,
            rf_trees=30,
            rf_max_depth=6,
            hmm_restarts=2,
            hmm_iterations=50,
            prophet_forecast_days=10,
            prophet_origin_step=63,
            quick_mode=True,
        )
        return replace(quick, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
