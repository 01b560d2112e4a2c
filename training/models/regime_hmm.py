"""``regime_hmm``: a Gaussian HMM over (daily log return, log realized volatility), judged by label stability.

Regimes have no ground truth, so the product requirement is that they mean the same thing after every refit: on
the days two consecutive refits both saw, the regimes they *serve* (argmax of the forward-filtered posterior over the
service's context window, see ``training/models/regime_labels.py``) must agree on at least 95 % of days. The
refits are independent (none starts EM from the previous one), so the agreement measures the data, not the
initialisation. The Viterbi labels' agreement is reported beside it (``label_agreement_viterbi``): a Viterbi decode
also uses the days after t, which a client's answer never can, so it is not what is served. The gate's floor
applies to the served agreement.

The fit (observations, EM starts, selection, canonical order) is in ``training/models/regime_fit.py``; served labels,
the agreement and label statistics in ``training/models/regime_labels.py``; this module evaluates, fits and saves.

The number of states is chosen by that measure (``STATE_COUNT_RULE``): three when their refits agree on 0.95 of
shared days, otherwise two. Measured (``benchmarks/bench_short_history.py``, served agreement mean / worst pair):
the indices 1999-2018 keep 3 states (pooled 0.985 / 0.952, S&P 500 alone 0.995, NASDAQ alone 0.986); from 2012,
the S&P 500 alone agrees 0.696 / 0.357 with 3 states (the third splits calm years differently as they accumulate)
and 0.977 / 0.948 with 2, which it keeps; the quick sample (both from 2010) 0.846 with 3, 0.974 with 2. A sticky
transition prior (up to 2,000 pseudo-counts) moved none of these by more than 0.01: the refits disagree on where
the volatility boundary lies, not on how often it is crossed. Shorter still, 2 states fall short: the S&P 500 from
2010 with two test years 0.917, the NASDAQ from 2014 0.942. The volatility-tercile baseline (each day's band of
log volatility between the training sample's terciles) agrees 0.964 on the full span but switches ~13 times a year
against the HMM's ~4.5. Out of sample (``training/evaluation/regimes.py``) the turbulent regime's next days were
more volatile than the calm one's in every test year that served both.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, ClassVar

import bentoml
import numpy as np
import pandas as pd

from bentos.inputs import REGIME_CONTEXT_ROWS
from bentos.regime_model import MODEL_FILE, OBSERVATIONS, ORDER_BY, RegimeModel, default_state_names
from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.quant import quant_figures
from training.evaluation.regimes import LABEL_COLUMN, RETURN_COLUMN
from training.evaluation.splits import yearly_test_periods
from training.evaluation.walk_forward import Evaluation
from training.models.execution import Execution
from training.models.regime_fit import (
    COVARIANCE_TYPE,
    COVARS_PRIOR_WEIGHT,
    INITIAL_STAY,
    MIN_TRAIN_OBSERVATIONS,
    RETURN,
    TOL_PER_OBSERVATION,
    VOLATILITY,
    HMMFit,
    RegimeData,
    Sequences,
    fit_hmm,
)
from training.models.regime_labels import (
    ServedLabels,
    ServedOnAll,
    agreement,
    band_labels,
    quantile_thresholds,
    state_statistics,
    switches_per_year,
    worst_restart_agreement,
)
from training.models.regime_refits import Refit, describe_refit, served_out_of_sample
from training.models.trainer import Fitted, Trainer

__all__ = ["BASELINE", "RegimeData", "RegimeHMM", "fit_hmm"]

#: How ``evaluate`` chooses the number of states (measured in the module docstring).
STATE_COUNT_RULE = (
    "the most states (from config.hmm_states down to 2) whose independent yearly refits serve the same regime on at "
    "least {floor:.2f} of shared days on average; the most stable count when none does"
)
#: Offset of the seed of the reproducibility check in ``evaluate`` (a refit of the final model, other seeds).
CHECK_SEED_OFFSET = 1000
BASELINE = "volatility_terciles"
#: What the agreement metrics compare, for the card.
LABELS = (
    f"served regimes: argmax of the forward-filtered posterior over the last {REGIME_CONTEXT_ROWS} feature rows "
    "ending at each day (bentos.batch.RegimeFilter, the service's filter), from independent refits; "
    "*_viterbi: Viterbi decodes of the whole history"
)

nan = float("nan")


def _finite_or_nan(value: float) -> float:
    """A float for metadata: inf (an absorbing state's duration) becomes NaN; BentoML takes NaN, never None."""
    value = float(value)
    return value if np.isfinite(value) else nan


# ------------------------------------------------------------------------------------------------- trainer


class RegimeHMM(Trainer):
    """Gaussian HMM regimes of (return, log volatility), pooled over symbols, judged by refit stability."""

    name: ClassVar[str] = "regime_hmm"
    task: ClassVar[str] = "regime_detection"
    target: ClassVar[str] = "hidden_state"
    primary_metric: ClassVar[str] = "label_agreement"
    higher_is_better: ClassVar[bool] = True
    pooled: ClassVar[bool] = True
    pooling: ClassVar[str] = (
        "one HMM over the (daily log return, log 21-day realized volatility) sequences of every symbol, fitted "
        "jointly with hmmlearn lengths (no transition across symbols); regimes are on one absolute volatility scale, "
        "so a more volatile symbol spends more days in the turbulent state"
    )

    def __init__(
        self,
        config: TrainingConfig,
        warm_start: RegimeModel | None = None,
        execution: Execution | None = None,
        n_states: int | None = None,
    ):
        """``warm_start``: a previous model (e.g. production's) that ``fit`` also starts EM from. ``n_states``: the
        states of ``evaluate`` and ``fit`` (default ``config.hmm_states``); ``evaluate_and_fit`` chooses its own."""
        super().__init__(config, execution)
        self.warm_start = warm_start
        self.n_states = n_states or config.hmm_states
        self.choose_states = n_states is None and config.hmm_states > 2

    @property
    def state_names(self) -> tuple[str, ...]:
        return default_state_names(self.n_states)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "n_states": self.n_states,
            "max_states": self.config.hmm_states,
            "state_count_rule": STATE_COUNT_RULE.format(floor=self.config.hmm_min_agreement),
            "covariance_type": COVARIANCE_TYPE,
            "random_restarts": self.config.hmm_restarts,
            "max_iterations": self.config.hmm_iterations,
            "tol_per_observation": TOL_PER_OBSERVATION,
            "covars_prior_weight": COVARS_PRIOR_WEIGHT,
            "initial_stay_probability": INITIAL_STAY,
            "seed": self.config.seed,
            "starts": "equal log-volatility quantile bands + random bands per restart (+ a warm start when one is "
            "given to the final fit; the walk-forward refits are independent)",
            "selection": "highest log-likelihood",
            "canonical_order": f"ascending mean {ORDER_BY}",
            "observations": [{"name": o.name, "feature": o.feature, "transform": o.transform} for o in OBSERVATIONS],
        }

    def _fit(self, sequences: Sequences, warm_start: RegimeModel | None, seed: int | None = None) -> HMMFit:
        return fit_hmm(
            sequences,
            n_states=self.n_states,
            restarts=self.config.hmm_restarts,
            n_iter=self.config.hmm_iterations,
            seed=self.config.seed if seed is None else seed,
            warm_start=warm_start,
            state_names=self.state_names,
        )

    # ------------------------------------------------------------------------------------------- evaluate

    def evaluate(self, panel: Panel) -> Evaluation:
        """Expanding yearly refits plus the final one, each independent; consecutive refits must serve the same regimes
        on the days both saw. Chooses the number of states (``STATE_COUNT_RULE``) unless it was given."""
        return self._choose(panel, with_final_fit=False)[0]

    def evaluate_and_fit(self, panel: Panel) -> tuple[Evaluation, Fitted, float, float]:
        """The refits, the seed check and the final fit as tasks at once; the seconds are the fits' own, summed (those
        of a state count tried and not kept are left out)."""
        evaluation, final = self._choose(panel, with_final_fit=True)
        assert final is not None
        fitted = self._fitted(panel, RegimeData.from_panel(panel).sequences(), final)
        refits = sum(float(f["fit_seconds"]) for f in evaluation.folds)
        return evaluation, fitted, refits + evaluation.extras["seed_check_seconds"], final.seconds

    def _choose(self, panel: Panel, with_final_fit: bool) -> tuple[Evaluation, HMMFit | None]:
        """The evaluation (and final fit) of the most states whose refits agree on the floor, or the best agreeing."""
        counts = range(self.config.hmm_states, 1, -1) if self.choose_states else [self.n_states]
        floor = self.config.hmm_min_agreement
        tried: dict[int, tuple[Evaluation, HMMFit | None]] = {}
        for n_states in counts:
            self.n_states = n_states
            tried[n_states] = self._evaluate(panel, with_final_fit)
            if tried[n_states][0].metrics["label_agreement"] >= floor:
                break
        else:  # none agrees on the floor: the most stable (the most states on a tie)
            self.n_states = max(tried, key=lambda n: np.nan_to_num(tried[n][0].metrics["label_agreement"], nan=-1.0))
        evaluation, final = tried[self.n_states]
        evaluation.metrics["n_states"] = float(self.n_states)
        evaluation.extras["state_count"] = {
            "rule": STATE_COUNT_RULE.format(floor=floor),
            "chosen": self.n_states,
            "tried": {
                str(n): {k: e.metrics[k] for k in ("label_agreement", "label_agreement_min")}
                for n, (e, _) in tried.items()
            },
        }
        return evaluation, final

    def _evaluate(self, panel: Panel, with_final_fit: bool) -> tuple[Evaluation, HMMFit | None]:
        started = time.perf_counter()
        data = RegimeData.from_panel(panel)
        periods = yearly_test_periods(panel.dates, self.config.test_years)
        cutoffs: list[np.datetime64 | None] = [start for start, _ in periods]
        cutoffs.append(None)
        trading_days = panel.spec.params.trading_days_per_year
        n_states = self.n_states
        names = self.state_names

        every = [data.sequences(cutoff) for cutoff in cutoffs]
        for cutoff, sequences in zip(cutoffs, every, strict=True):
            if len(sequences) < MIN_TRAIN_OBSERVATIONS:
                raise ValueError(f"the refit before {cutoff} has only {len(sequences)} observations")
        # every fit as a task at once: the refits (independent: no warm start from the previous refit), the
        # reproducibility check (the final refit again from other random starts) and, when asked, the final model
        jobs: dict[str, tuple[Any, ...]] = {
            f"refit-{str(c) if c is not None else 'final'}": (q, None, None)
            for c, q in zip(cutoffs, every, strict=True)
        }
        jobs["seed-check"] = (every[-1], None, self.config.seed + CHECK_SEED_OFFSET)
        if with_final_fit:
            jobs["fit"] = (every[-1], self.warm_start, None)
        fits = self.execution.run(self.name, self._fit, jobs)
        final_fit = fits.pop("fit", None)
        check = fits.pop("seed-check")
        refits: list[Refit] = []
        for fold, (cutoff, sequences, fit) in enumerate(zip(cutoffs, every, fits.values(), strict=True)):
            thresholds = quantile_thresholds(sequences.observations[:, VOLATILITY], n_states)
            period = periods[fold] if fold < len(periods) else periods[-1]
            refits.append(Refit(fold if cutoff is not None else -1, cutoff, period, sequences, fit, thresholds))

        final = refits[-1]
        everything = final.sequences
        served = ServedOnAll(ServedLabels(panel), everything.rows, len(panel))
        pairs: dict[str, list[float]] = {"served": [], "viterbi": [], BASELINE: []}
        for older, newer in itertools.pairwise(refits):
            shared = older.sequences  # every day before the older refit's cutoff, seen by both
            pairs["served"].append(
                agreement(served.of(older.fit.model, shared.rows), served.of(newer.fit.model, shared.rows))
            )
            a = older.fit.model.decode(shared.observations, shared.lengths)
            b = newer.fit.model.decode(shared.observations, shared.lengths)
            pairs["viterbi"].append(agreement(a, b))
            volatility = shared.observations[:, VOLATILITY]
            pairs[BASELINE].append(
                agreement(band_labels(volatility, older.thresholds), band_labels(volatility, newer.thresholds))
            )

        model = final.fit.model
        labels = model.decode(everything.observations, everything.lengths)
        probabilities = model.posteriors(everything.observations, everything.lengths)
        baseline_labels = band_labels(everything.observations[:, VOLATILITY], final.thresholds)

        seed_agreement = agreement(served.of(model, everything.rows), served.of(check.model, everything.rows))

        restart_agreement = [worst_restart_agreement(r.fit, r.sequences.rows, served) for r in refits]
        stats = state_statistics(labels, everything, names, trading_days)
        durations = model.expected_durations()
        metrics: dict[str, float] = {
            "label_agreement": float(np.mean(pairs["served"])),
            "label_agreement_min": float(np.min(pairs["served"])),
            "label_agreement_viterbi": float(np.mean(pairs["viterbi"])),
            "label_agreement_viterbi_min": float(np.min(pairs["viterbi"])),
            "seed_agreement": seed_agreement,
            "restart_agreement_min": float(np.min(restart_agreement)),
            "log_likelihood_per_obs": final.fit.log_likelihood / len(everything),
            "switches_per_year": switches_per_year(labels, everything.lengths, trading_days),
            "n_refits": float(len(refits)),
        }
        for i, name in enumerate(names):
            metrics[f"state_volatility_{name}"] = stats["volatility"][name]
            metrics[f"state_frequency_{name}"] = stats["frequency"][name]
            metrics[f"expected_duration_{name}"] = _finite_or_nan(durations[i])
            metrics[f"mean_spell_{name}"] = stats["mean_spell"][name]

        base_stats = state_statistics(baseline_labels, everything, names, trading_days)
        baseline: dict[str, float] = {
            "label_agreement": float(np.mean(pairs[BASELINE])),
            "label_agreement_min": float(np.min(pairs[BASELINE])),
            "switches_per_year": switches_per_year(baseline_labels, everything.lengths, trading_days),
        }
        for name in names:
            baseline[f"state_volatility_{name}"] = base_stats["volatility"][name]
            baseline[f"state_frequency_{name}"] = base_stats["frequency"][name]
            baseline[f"mean_spell_{name}"] = base_stats["mean_spell"][name]

        folds = [describe_refit(r, panel, pairs, BASELINE, restart_agreement[i]) for i, r in enumerate(refits)]
        rows = everything.rows
        predictions = pd.DataFrame(
            {
                "date": panel.dates[rows],
                "symbol": panel.symbols[rows],
                "fold": -1,
                "actual": everything.observations[:, VOLATILITY],
                "prediction": labels,
                "state": np.asarray(names, dtype=object)[labels],
                "close": panel.close[rows],
                "log_return": everything.observations[:, RETURN],
                f"baseline_{BASELINE}": baseline_labels,
                **{f"p_{name}": probabilities[:, i] for i, name in enumerate(names)},
                LABEL_COLUMN: served_out_of_sample(refits, served, panel, rows),
                RETURN_COLUMN: panel.forward_log_returns(1)[rows],
            }
        )
        predictions = predictions.sort_values(["date", "symbol"], kind="stable").reset_index(drop=True)
        extras = {
            "state_names": list(names),
            "covariance_type": COVARIANCE_TYPE,
            "observations": [o.name for o in OBSERVATIONS],
            "cutoffs": [str(c) if c is not None else "final" for c in cutoffs],
            "agreement_labels": LABELS,
            "regime_context_rows": REGIME_CONTEXT_ROWS,
            "pairwise_agreement": pairs["served"],
            "pairwise_agreement_viterbi": pairs["viterbi"],
            f"pairwise_agreement_{BASELINE}": pairs[BASELINE],
            "transition_matrix": model.transmat.tolist(),
            "state_means": self._state_means(model),
            "expected_durations": {n: _finite_or_nan(d) for n, d in zip(names, durations, strict=True)},
            "state_volatility": stats["volatility"],
            "seed_check_log_likelihood": check.log_likelihood,
            "seed_check_seconds": check.seconds,
            "evaluate_seconds": time.perf_counter() - started,
        }
        evaluation = Evaluation(
            model=self.name,
            task=self.task,
            primary_metric=self.primary_metric,
            higher_is_better=self.higher_is_better,
            metrics=metrics,
            baselines={BASELINE: baseline},
            folds=folds,
            predictions=predictions,
            extras=extras,
            quant=quant_figures(self.task, predictions, self.horizon)[0],
        )
        return evaluation, final_fit

    # ------------------------------------------------------------------------------------------------ fit

    @staticmethod
    def _state_means(model: RegimeModel) -> dict[str, dict[str, float]]:
        return {
            name: {o: float(v) for o, v in zip(model.observation_names, model.means[i], strict=True)}
            for i, name in enumerate(model.state_names)
        }

    def fit(self, panel: Panel) -> Fitted:
        """The final HMM on every complete row of the panel (warm-started from ``warm_start`` when given)."""
        sequences = RegimeData.from_panel(panel).sequences()
        return self._fitted(panel, sequences, self._fit(sequences, self.warm_start))

    def _fitted(self, panel: Panel, sequences: Sequences, fit: HMMFit) -> Fitted:
        model = fit.model
        labels = model.decode(sequences.observations, sequences.lengths)
        stats = state_statistics(labels, sequences, model.state_names, panel.spec.params.trading_days_per_year)
        names = list(model.state_names)
        extra: dict[str, Any] = {
            "state_names": names,
            "covariance_type": model.covariance_type,
            "observations": [{"name": o.name, "feature": o.feature, "transform": o.transform} for o in OBSERVATIONS],
            "start_probabilities": {n: float(p) for n, p in zip(names, model.startprob, strict=True)},
            "transition_matrix": model.transmat.tolist(),
            "state_means": self._state_means(model),
            "state_variances": {
                name: {o: float(v) for o, v in zip(model.observation_names, variances, strict=True)}
                for name, variances in zip(names, _variances(model), strict=True)
            },
            "expected_durations": {
                n: _finite_or_nan(d) for n, d in zip(names, model.expected_durations(), strict=True)
            },
            "state_volatility": stats["volatility"],
            "state_frequency": stats["frequency"],
            "log_likelihood": fit.log_likelihood,
            "log_likelihood_per_obs": fit.log_likelihood / fit.n_observations,
            "n_observations": fit.n_observations,
            "best_start": fit.best.start,
            "candidates": len(fit.candidates),
            "candidates_at_best": fit.candidates_at_best,
            "converged": fit.best.converged,
            "model_file": MODEL_FILE,
        }
        return Fitted(model=model, hyperparameters=self.hyperparameters(), extra=extra)

    def save(self, fitted: Fitted, metadata: dict[str, Any], labels: dict[str, str]) -> bentoml.Model:
        """Write ``regime_hmm.json`` into a new store model. Its ``path`` is temporary: use the tag afterwards."""
        model: RegimeModel = fitted.model
        with bentoml.models.create(self.name, labels=labels, metadata=metadata) as stored:
            Path(stored.path_of(MODEL_FILE)).write_text(model.to_json(), encoding="utf-8")
        return stored


def _variances(model: RegimeModel) -> np.ndarray:
    covars = np.asarray(model.covars)
    return covars if model.covariance_type == "diag" else np.diagonal(covars, axis1=1, axis2=2)
