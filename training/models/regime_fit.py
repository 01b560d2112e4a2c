"""Fitting the regime HMM: observations as per-symbol sequences, EM from several starts, the best in canonical order.

One HMM pooled over the symbols: each symbol's observations are a separate sequence (hmmlearn ``lengths``), so no
transition is counted across symbols. EM starts from several initialisations and the highest log-likelihood wins:

* an equal-quantile start: the observations split into ``n_states`` equal bands of log volatility, each band's
  mean and variance as a state, sticky transitions (0.95 on the diagonal). It is deterministic and close to the
  optimum, so EM converges in tens of iterations;
* ``hmm_restarts`` random starts (seeded by ``config.seed`` and the restart index): random band edges and random
  stickiness, which explore other partitions of the volatility axis (the local optima differ in exactly that);
* when a ``warm_start`` model is given (``RegimeHMM(config, warm_start=...)`` for the final fit), its parameters.
  The walk-forward refits of ``RegimeHMM.evaluate`` never warm-start: their agreement must come from the data, not
  from starting where the previous refit ended.

The winner is put in canonical order (states sorted by mean log volatility, ``RegimeModel.from_hmm``), so that
state names mean the same thing after every refit.

Diagonal covariances: within a state the correlation between the day's return and the volatility level is
0.01-0.04 on the embedded data (leverage links returns to volatility *changes*, not levels); full covariances
raise the log-likelihood by ~2.5 on 9,560 observations, far below the BIC penalty of their 3 extra parameters
(~14), give the same labels (agreement within 0.01) and cost ~10x the fitting time.

Scale: a return's variance is ~1e-4 while log volatility's is ~0.3. hmmlearn's default ``covars_prior`` (1e-2,
in absolute units) would be a noticeable floor on the return variance of a calm state, so the prior is scaled to
the data: 1 % of a pseudo-observation with the variance of the whole sample, which only matters for a state
that is nearly empty. The EM tolerance is per observation (1e-8 x n), so it means the same on 2 or 20 years.
hmmlearn's defaults (k-means start, random transitions, tol 1e-2, absolute covars_prior) fell into another optimum
on two refits of the full span (agreement 0.55).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from hmmlearn.hmm import GaussianHMM

from bentos.regime_model import (
    OBSERVATIONS,
    ORDER_BY,
    Observation,
    RegimeModel,
    default_state_names,
    observation_matrix,
)
from training.dataset import Panel, rows_by_symbol

COVARIANCE_TYPE = "diag"
#: EM stops when the total log-likelihood improves by less than this times the number of observations.
TOL_PER_OBSERVATION = 1e-8
#: Weight (in observations) of the variance prior, which has the whole sample's per-dimension variance.
COVARS_PRIOR_WEIGHT = 0.01
#: Diagonal of the transition matrix at the equal-quantile start; random starts draw it from this range.
INITIAL_STAY = 0.95
RANDOM_STAY = (0.85, 0.99)
#: Weight of the uniform distribution mixed into a warm start's probabilities.
WARM_UNIFORM_MIX = 1e-6
#: Smallest share of the observations in one band of a random start.
MIN_BAND = 0.02
#: Fewest observations a refit needs (about a year of one symbol).
MIN_TRAIN_OBSERVATIONS = 250
#: Two candidate fits whose log-likelihoods differ by less than this per observation count as the same optimum.
SAME_OPTIMUM_PER_OBSERVATION = 1e-6

#: Columns of the observation matrix.
RETURN = [o.name for o in OBSERVATIONS].index("log_return")
VOLATILITY = [o.name for o in OBSERVATIONS].index(ORDER_BY)


# ------------------------------------------------------------------------------------------------ observations


@dataclass(frozen=True)
class RegimeData:
    """The observation of every panel row, and whether it is complete."""

    panel: Panel
    values: np.ndarray
    valid: np.ndarray

    @classmethod
    def from_panel(cls, panel: Panel, observations: Sequence[Observation] = OBSERVATIONS) -> RegimeData:
        values, valid = observation_matrix(panel.features, panel.spec.names, observations)
        return cls(panel, values, valid)

    def sequences(self, before: np.datetime64 | None = None) -> Sequences:
        """Complete rows dated before ``before`` (all when None) as per-symbol, date-ordered sequences."""
        keep = self.valid.copy()
        if before is not None:
            keep &= self.panel.dates < before
        kept = np.flatnonzero(keep)
        groups = rows_by_symbol(self.panel.symbols[kept])  # one pass: a mask per symbol costs symbols x rows
        parts = [kept[groups[symbol]] for symbol in sorted(groups)]  # each date-ordered, as the panel is
        rows = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return Sequences(self.values[rows], [int(p.size) for p in parts], rows)


@dataclass(frozen=True)
class Sequences:
    """Observations of several symbols, concatenated symbol by symbol; ``rows`` are their panel rows."""

    observations: np.ndarray
    lengths: list[int]
    rows: np.ndarray

    def __len__(self) -> int:
        return int(self.rows.size)


# --------------------------------------------------------------------------------------------------------- fit


@dataclass
class Candidate:
    """One EM run: where it started and where it ended."""

    start: str
    log_likelihood: float
    iterations: int
    converged: bool
    model: GaussianHMM = field(repr=False)


@dataclass
class HMMFit:
    """The best of several EM runs, in canonical form, with the raw hmmlearn model it came from."""

    model: RegimeModel
    raw: GaussianHMM
    best: Candidate
    candidates: list[Candidate]
    n_observations: int
    seconds: float

    @property
    def log_likelihood(self) -> float:
        return self.best.log_likelihood

    @property
    def candidates_at_best(self) -> int:
        """How many EM runs reached the best optimum (a measure of how easy it is to find)."""
        tolerance = SAME_OPTIMUM_PER_OBSERVATION * self.n_observations
        return sum(c.log_likelihood >= self.log_likelihood - tolerance for c in self.candidates)


def _band_start(
    x: np.ndarray, n_states: int, edges: np.ndarray, stay: float, covariance_type: str
) -> dict[str, np.ndarray]:
    """Parameters of states that are bands of log volatility between the quantile levels ``edges``."""
    cuts = np.quantile(x[:, VOLATILITY], edges)
    band = np.searchsorted(cuts, x[:, VOLATILITY], side="right")
    floor = 1e-3 * x.var(axis=0)
    means, covars = [], []
    for state in range(n_states):
        members = x[band == state]
        if members.shape[0] < 2:  # only with heavily tied data: start that state from the whole sample
            members = x
        means.append(members.mean(axis=0))
        variance = np.maximum(members.var(axis=0), floor)
        covars.append(variance if covariance_type == "diag" else np.diag(variance))
    if n_states == 1:
        transmat = np.ones((1, 1))
    else:
        off = (1.0 - stay) / (n_states - 1)
        transmat = np.full((n_states, n_states), off) + np.eye(n_states) * (stay - off)
    return {
        "startprob": np.full(n_states, 1.0 / n_states),
        "transmat": transmat,
        "means": np.asarray(means),
        "covars": np.asarray(covars),
    }


def _starts(
    x: np.ndarray, n_states: int, restarts: int, seed: int, covariance_type: str, warm_start: RegimeModel | None
) -> list[tuple[str, dict[str, np.ndarray]]]:
    starts = [("quantile", _band_start(x, n_states, np.arange(1, n_states) / n_states, INITIAL_STAY, covariance_type))]
    for restart in range(restarts):
        rng = np.random.default_rng([seed, restart])
        # band widths: at least MIN_BAND of the sample each, the rest split at random
        widths = MIN_BAND + (1.0 - n_states * MIN_BAND) * rng.dirichlet(np.full(n_states, 2.0))
        edges = np.cumsum(widths)[:-1]
        stay = float(rng.uniform(*RANDOM_STAY))
        starts.append((f"random_{restart}", _band_start(x, n_states, edges, stay, covariance_type)))
    if (
        warm_start is not None
        and warm_start.n_states == n_states
        and warm_start.covariance_type == covariance_type
        and warm_start.n_features == x.shape[1]
    ):
        # EM never revives an exact zero probability: mix in a trace of uniform so the warm start can still move
        mix = WARM_UNIFORM_MIX / n_states
        params = {
            "startprob": (1.0 - WARM_UNIFORM_MIX) * np.asarray(warm_start.startprob) + mix,
            "transmat": (1.0 - WARM_UNIFORM_MIX) * np.asarray(warm_start.transmat) + mix,
            "means": np.asarray(warm_start.means),
            "covars": np.asarray(warm_start.covars),
        }
        starts.append(("warm", params))
    return starts


def fit_hmm(
    sequences: Sequences,
    *,
    n_states: int,
    restarts: int,
    n_iter: int,
    seed: int,
    covariance_type: str = COVARIANCE_TYPE,
    warm_start: RegimeModel | None = None,
    observations: Sequence[Observation] = OBSERVATIONS,
    state_names: Sequence[str] | None = None,
) -> HMMFit:
    """EM from every start of the module docstring; the highest log-likelihood wins, in canonical form."""
    started = time.perf_counter()
    x = sequences.observations
    if len(sequences) < MIN_TRAIN_OBSERVATIONS:
        raise ValueError(f"a regime HMM needs at least {MIN_TRAIN_OBSERVATIONS} observations, got {len(sequences)}")
    n = x.shape[0]
    prior = COVARS_PRIOR_WEIGHT * x.var(axis=0)
    covars_prior = np.tile(prior, (n_states, 1)) if covariance_type == "diag" else np.stack([np.diag(prior)] * n_states)
    candidates = []
    for start, params in _starts(x, n_states, restarts, seed, covariance_type, warm_start):
        model = GaussianHMM(
            n_components=n_states,
            covariance_type=covariance_type,
            covars_prior=covars_prior,
            covars_weight=1.0,
            n_iter=n_iter,
            tol=TOL_PER_OBSERVATION * n,
            init_params="",
            params="stmc",
            implementation="scaling",  # ~4x faster than "log" here, same optimum
            random_state=seed,
        )
        model.startprob_ = params["startprob"].copy()
        model.transmat_ = params["transmat"].copy()
        model.means_ = params["means"].copy()
        model.covars_ = params["covars"].copy()
        try:
            model.fit(x, sequences.lengths)
            log_likelihood = float(model.score(x, sequences.lengths))
        except (ValueError, np.linalg.LinAlgError):  # a start that collapsed a state: the others decide
            continue
        if np.isfinite(log_likelihood):
            monitor = model.monitor_
            candidates.append(Candidate(start, log_likelihood, int(monitor.iter), bool(monitor.converged), model))
    if not candidates:
        raise RuntimeError("every EM start of the regime HMM failed")
    best = max(candidates, key=lambda c: c.log_likelihood)
    canonical = RegimeModel.from_hmm(best.model, observations, state_names or default_state_names(n_states))
    return HMMFit(canonical, best.model, best, candidates, n, time.perf_counter() - started)
