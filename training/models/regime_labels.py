"""The regime model's labels: what the service answers for each day, how two models' labels agree, label statistics.

Served labels. The service (``detect_regime``, ``RegimeModel.posterior_last``) and batch inference answer, for a
day t, the forward-filtered posterior at t given the last ``REGIME_CONTEXT_ROWS`` feature rows ending at t (fewer
near the start of a symbol); its argmax is the regime a client reads. :class:`ServedLabels` computes exactly that
for panel rows with batch inference's filter (``bentos.batch.RegimeFilter``), on the feature rows of every bar of
the snapshot, so the context of an early panel row reaches back before ``TrainingConfig.first_date`` as a client's
window would. Viterbi labels (``RegimeModel.decode``) decode a whole history at once, using days after t: they are
not what is served, and they agree across refits more than served labels do.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from bentos.batch import RegimeFilter
from bentos.inputs import REGIME_CONTEXT_ROWS
from bentos.regime_model import RegimeModel, observation_matrix
from features import Bars
from training.dataset import Panel, rows_by_symbol
from training.models.regime_fit import RETURN, HMMFit, Sequences

nan = float("nan")


class ServedLabels:
    """The regime the service answers for panel rows, under any model fitted on the panel's observations."""

    def __init__(self, panel: Panel, context_rows: int = REGIME_CONTEXT_ROWS):
        self.panel = panel
        self.context_rows = context_rows
        self._features: dict[str, np.ndarray] = {}

    def features(self, symbol: str) -> np.ndarray:
        """The feature rows of every bar of ``symbol`` (as the service computes them from a client's window)."""
        if symbol not in self._features:
            self._features[symbol] = self.panel.spec.compute(Bars.from_frame(self.panel.bars[symbol]))
        return self._features[symbol]

    def posteriors(self, model: RegimeModel, rows: np.ndarray) -> np.ndarray:
        """P(state at the row's date | its context), shape (rows, states): what ``detect_regime`` answers."""
        spec = self.panel.spec
        regime_filter = RegimeFilter(model, self.context_rows, spec.lookback)
        symbols, positions = self.panel.symbols[rows], self.panel.positions[rows]
        result = np.full((rows.size, model.n_states), np.nan)
        segments, placements = [], []
        groups = rows_by_symbol(symbols)  # one pass: a mask per symbol costs symbols x rows
        for symbol in sorted(groups):
            mine = groups[symbol]
            first_emitted, last = int(positions[mine].min()), int(positions[mine].max())
            start = max(spec.lookback, first_emitted - self.context_rows + 1)  # the first row's first context row
            context = self.features(symbol)[start : last + 1]
            values, valid = observation_matrix(context, spec.names, model.observation_defs)
            segments.append((start, regime_filter.emissions(values, valid), valid, last - first_emitted + 1))
            placements.append((mine, positions[mine] - first_emitted))
        stacked = regime_filter.posteriors(segments)  # segment after segment, each from its first emitted row
        offset = 0
        for (mine, index), segment in zip(placements, segments, strict=True):
            result[mine] = stacked[offset + index]
            offset += segment[3]
        return result

    def labels(self, model: RegimeModel, rows: np.ndarray) -> np.ndarray:
        """The served regime of each row (canonical state index): argmax of :meth:`posteriors`."""
        return np.argmax(self.posteriors(model, rows), axis=1).astype(np.int64)


class ServedOnAll:
    """Served regimes of every complete row under a model, filtered once per model and looked up for any rows."""

    def __init__(self, served: ServedLabels, rows: np.ndarray, panel_rows: int):
        self.served = served
        self.rows = rows
        self.index = np.full(panel_rows, -1, dtype=np.int64)
        self.index[rows] = np.arange(rows.size)
        self._labels: dict[RegimeModel, np.ndarray] = {}  # equal models (same parameters) serve the same regimes

    def of(self, model: RegimeModel, rows: np.ndarray) -> np.ndarray:
        if model not in self._labels:
            self._labels[model] = self.served.labels(model, self.rows)
        return self._labels[model][self.index[rows]]


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of days with the same label."""
    return float(np.mean(a == b)) if a.size else float("nan")


def worst_restart_agreement(fit: HMMFit, rows: np.ndarray, served: ServedOnAll) -> float:
    """Worst agreement of served regimes between a fit's winning EM run and any other run (how different the
    optima are)."""
    best = served.of(fit.model, rows)
    worst = 1.0
    for candidate in fit.candidates:
        if candidate is fit.best:
            continue
        worst = min(worst, agreement(best, served.of(RegimeModel.from_hmm(candidate.model), rows)))
    return worst


def band_labels(log_volatility: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The baseline's labels: the quantile band of each day's log volatility (0 = calmest)."""
    return np.searchsorted(thresholds, log_volatility, side="right").astype(np.int64)


def quantile_thresholds(log_volatility: np.ndarray, n_states: int) -> np.ndarray:
    return np.quantile(log_volatility, np.arange(1, n_states) / n_states)


def state_statistics(
    labels: np.ndarray, sequences: Sequences, names: Sequence[str], trading_days: int
) -> dict[str, dict[str, float]]:
    """Per state: annualised realized volatility of its days, share of days, mean spell length (days)."""
    returns = sequences.observations[:, RETURN]
    spells = _spells(labels, sequences.lengths)
    stats: dict[str, dict[str, float]] = {"volatility": {}, "frequency": {}, "mean_spell": {}}
    for state, name in enumerate(names):
        days = labels == state
        stats["volatility"][name] = float(np.sqrt(trading_days * np.mean(returns[days] ** 2))) if days.any() else nan
        stats["frequency"][name] = float(days.mean()) if labels.size else nan
        lengths = [length for label, length in spells if label == state]
        stats["mean_spell"][name] = float(np.mean(lengths)) if lengths else nan
    return stats


def switches_per_year(labels: np.ndarray, lengths: Sequence[int], trading_days: int) -> float:
    """Label changes per symbol-year of decoded days."""
    changes = len(_spells(labels, lengths)) - sum(1 for length in lengths if length)
    return float(changes / max(labels.size, 1) * trading_days)


def _spells(labels: np.ndarray, lengths: Sequence[int]) -> list[tuple[int, int]]:
    """(label, length) of every run of equal labels, per sequence."""
    spells, offset = [], 0
    for length in lengths:
        part = labels[offset : offset + length]
        offset += length
        if part.size:
            bounds = np.concatenate(([0], np.flatnonzero(np.diff(part)) + 1, [part.size]))
            spells += [(int(part[a]), int(b - a)) for a, b in itertools.pairwise(bounds)]
    return spells
