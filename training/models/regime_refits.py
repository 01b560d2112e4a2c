"""The regime HMM's walk-forward refits: one per test year plus the final one, how the card describes each, and the
regimes each yearly refit serves on the year after its cutoff (the out-of-sample labels of
``training/evaluation/regimes.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.dataset import Panel
from training.models.regime_fit import VOLATILITY, HMMFit, Sequences
from training.models.regime_labels import ServedOnAll

nan = float("nan")


@dataclass
class Refit:
    """One independent fit on every complete row before ``cutoff`` (None: the final fit on every row); ``period`` is
    the test year that follows it."""

    fold: int
    cutoff: np.datetime64 | None
    period: tuple[np.datetime64, np.datetime64]
    sequences: Sequences
    fit: HMMFit
    thresholds: np.ndarray


def served_out_of_sample(refits: Sequence[Refit], served: ServedOnAll, panel: Panel, rows: np.ndarray) -> np.ndarray:
    """For each of ``rows``: the regime served by the yearly refit trained before its test year, -1 for a row in no
    test year (the final refit serves none: it has seen them all)."""
    labels = np.full(rows.size, -1, dtype=np.int64)
    dates = panel.dates[rows]
    for refit in refits:
        if refit.cutoff is None:
            continue
        start, end = refit.period
        mine = (dates >= start) & (dates < end)
        labels[mine] = served.of(refit.fit.model, rows[mine])
    return labels


def describe_refit(
    refit: Refit, panel: Panel, pairs: dict[str, list[float]], baseline: str, restart_agreement: float
) -> dict[str, Any]:
    """One refit for the card. The final refit reports the last test year: it is the first to train on it."""
    index = len(pairs["served"]) if refit.cutoff is None else refit.fold
    dates = panel.dates[refit.sequences.rows]
    fit = refit.fit

    def with_previous(kind: str) -> float:
        return pairs[kind][index - 1] if index > 0 else nan

    return {
        "fold": refit.fold,
        "role": "final" if refit.cutoff is None else "yearly",
        "cutoff": str(refit.cutoff) if refit.cutoff is not None else "final",
        "train_start": str(dates.min()),
        "train_end": str(dates.max()),
        "test_start": str(refit.period[0]),
        "test_end": str(refit.period[1] - np.timedelta64(1, "D")),
        "n_train": len(refit.sequences),
        "agreement_with_previous": with_previous("served"),
        "viterbi_agreement_with_previous": with_previous("viterbi"),
        "baseline_agreement_with_previous": with_previous(baseline),
        "log_likelihood": fit.log_likelihood,
        "log_likelihood_per_obs": fit.log_likelihood / fit.n_observations,
        "best_start": fit.best.start,
        "iterations": fit.best.iterations,
        "converged": fit.best.converged,
        "candidates": len(fit.candidates),
        "candidates_at_best": fit.candidates_at_best,
        "restart_agreement_min": restart_agreement,
        "state_log_volatility": fit.model.means[:, VOLATILITY].tolist(),
        "fit_seconds": fit.seconds,
    }
