"""``regime_hmm`` on the real embedded data: canonical states, refit stability, store round trip, permutations.

Over 400 lines because every test reads the same module fixtures: one walk-forward evaluation and one final fit of
the 1999-2018 span (about 15 s on two cores); split in two, each file would pay for them again.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest

from bentos import regime_filter
from bentos.batch import RegimeFilter
from bentos.inputs import REGIME_CONTEXT_ROWS, regime_features
from bentos.regime_model import MODEL_FILE, RegimeModel, observation_matrix
from data.snapshots import SnapshotInfo
from features import DEFAULT_SPEC, Bars, validate_ohlcv
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.evaluation.walk_forward import Evaluation
from training.models.regime_fit import RegimeData, fit_hmm
from training.models.regime_hmm import BASELINE, RegimeHMM
from training.models.regime_labels import ServedLabels
from training.models.trainer import Fitted

# The whole 1999-2018 span (the 3-state optimum is well identified on it; from 2010 only it is not, see the
# module docstring of training/models/regime_hmm.py) with two yearly refits plus the final one: three fits.
CONFIG = TrainingConfig(test_years=2, hmm_restarts=2, hmm_iterations=200, seed=0)
NAMES = ("calm", "normal", "turbulent")
ROOT = Path(__file__).resolve().parents[1]


def assert_basic_json(value: Any, where: str = "") -> None:
    """JSON-like basic types all the way down and no None (BentoML metadata rejects None; NaN is fine)."""
    assert value is not None, f"None at {where or 'top level'}"
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"key {key!r} at {where}"
            assert_basic_json(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_basic_json(item, f"{where}[{i}]")
    else:
        assert type(value) in (str, int, float, bool), f"{type(value).__name__} at {where}"


@pytest.fixture(scope="module")
def panel(embedded_bars: pd.DataFrame) -> Panel:
    counts = embedded_bars.groupby("symbol").size()
    info = SnapshotInfo(
        id="embedded-test",
        source="embedded",
        symbols=[str(s) for s in counts.index],
        start=str(embedded_bars["date"].min().date()),
        end=str(embedded_bars["date"].max().date()),
        rows=len(embedded_bars),
        rows_per_symbol={str(k): int(v) for k, v in counts.items()},
        created_at="2024-01-01T00:00:00+00:00",
        origin={},
    )
    return build_panel(embedded_bars, info, CONFIG.horizon, CONFIG.first_date)


@pytest.fixture(scope="module")
def evaluation(panel: Panel) -> Evaluation:
    return RegimeHMM(CONFIG).evaluate(panel)


@pytest.fixture(scope="module")
def fitted(panel: Panel) -> Fitted:
    return RegimeHMM(CONFIG).fit(panel)


@pytest.fixture(scope="module")
def everything(panel: Panel) -> tuple[np.ndarray, list[int]]:
    sequences = RegimeData.from_panel(panel).sequences()
    return sequences.observations, sequences.lengths


@pytest.fixture(scope="module")
def full_covariance(panel: Panel) -> RegimeModel:
    """A 3-state model with full covariances fitted on the same data (the trainer's default is "diag")."""
    sequences = RegimeData.from_panel(panel).sequences()
    return fit_hmm(sequences, n_states=3, restarts=1, n_iter=200, seed=0, covariance_type="full").model


@pytest.fixture
def model_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private BentoML model store for one test.

    BentoML resolves BENTOML_HOME once per process, on first use of the store, and another test may have used it
    already; so besides the environment the store provider itself is pointed at the temporary home, and restored.
    """
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    home = tmp_path / "bentoml"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("BENTOML_HOME", str(home))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "true")
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    try:
        yield home
    finally:
        BentoMLContainer.model_store.reset()


# ------------------------------------------------------------------------------------------ (a) canonical order


def test_states_are_ordered_by_volatility_and_named(fitted: Fitted, evaluation: Evaluation) -> None:
    model: RegimeModel = fitted.model
    assert model.state_names == NAMES
    assert fitted.extra["state_names"] == list(NAMES)
    assert np.all(np.diff(model.means[:, 1]) > 0), "mean log volatility must increase with the state index"
    realized = [evaluation.metrics[f"state_volatility_{n}"] for n in NAMES]
    assert realized == sorted(realized) and len(set(realized)) == len(realized), realized
    assert list(fitted.extra["state_volatility"]) == list(NAMES)
    assert np.all(np.diff(list(fitted.extra["state_volatility"].values())) > 0)
    for fold in evaluation.folds:  # every refit, not only the final one
        assert np.all(np.diff(fold["state_log_volatility"]) > 0), fold
    # the calm state really is calm, the turbulent one really is not (annualised)
    assert realized[0] < 0.15 < 0.30 < realized[2]


# --------------------------------------------------------------------------------------- (b) refit stability


def test_consecutive_refits_label_shared_days_alike(evaluation: Evaluation) -> None:
    pairs = evaluation.extras["pairwise_agreement"]
    assert len(pairs) == CONFIG.test_years  # yearly refits + the final one, compared pairwise
    assert evaluation.metrics["n_states"] == 3 and list(evaluation.extras["state_count"]["tried"]) == ["3"]
    assert min(pairs) >= 0.95, pairs
    assert evaluation.metrics["label_agreement_min"] >= 0.95
    assert evaluation.metrics["label_agreement"] == pytest.approx(float(np.mean(pairs)))
    refits = [f for f in evaluation.folds if not math.isnan(f["agreement_with_previous"])]
    assert [f["agreement_with_previous"] for f in refits] == pairs
    viterbi = evaluation.extras["pairwise_agreement_viterbi"]
    assert [f["viterbi_agreement_with_previous"] for f in refits] == viterbi
    assert evaluation.metrics["label_agreement_viterbi"] == pytest.approx(float(np.mean(viterbi)))
    assert evaluation.folds[-1]["fold"] == -1 and evaluation.folds[-1]["role"] == "final"
    assert all(f["converged"] for f in evaluation.folds)


def served_regimes(model: RegimeModel, panel: Panel, rows: np.ndarray) -> np.ndarray:
    """The regime the service answers on each row's date: batch inference's filter over the service's context (the
    last REGIME_CONTEXT_ROWS feature rows of the symbol's bars up to that date), argmax."""
    regime_filter = RegimeFilter(model)
    labels = np.full(rows.size, -1)
    for symbol in np.unique(panel.symbols[rows]):
        mine = np.flatnonzero(panel.symbols[rows] == symbol)
        positions = panel.positions[rows[mine]]
        observations, valid = regime_filter.observations(DEFAULT_SPEC.compute(Bars.from_frame(panel.bars[symbol])))
        first, last = int(positions.min()), int(positions.max())
        start = max(DEFAULT_SPEC.lookback, first - REGIME_CONTEXT_ROWS + 1)
        emissions = regime_filter.emissions(observations[start : last + 1], valid[start : last + 1])
        posteriors = regime_filter.posteriors([(start, emissions, valid[start : last + 1], last - first + 1)])
        labels[mine] = posteriors[positions - first].argmax(axis=1)
    return labels


def test_agreement_is_that_of_the_served_regimes_of_independent_refits(panel: Panel, evaluation: Evaluation) -> None:
    """What a client reads (the filtered regime at the last bar of its window), not Viterbi decodes; and refits that
    do not start from the previous one, so the agreement is the data's, not the initialisation's."""
    data = RegimeData.from_panel(panel)
    cutoffs = [None if c == "final" else np.datetime64(c) for c in evaluation.extras["cutoffs"]]
    fits = [
        fit_hmm(data.sequences(c), n_states=3, restarts=CONFIG.hmm_restarts, n_iter=CONFIG.hmm_iterations, seed=0)
        for c in cutoffs
    ]
    assert [f["candidates"] for f in evaluation.folds] == [CONFIG.hmm_restarts + 1] * len(cutoffs)  # no warm start
    assert [f["log_likelihood"] for f in evaluation.folds] == pytest.approx([f.log_likelihood for f in fits])
    served, viterbi = [], []
    for i in range(len(fits) - 1):
        shared = data.sequences(cutoffs[i])
        older, newer = fits[i].model, fits[i + 1].model
        served.append(np.mean(served_regimes(older, panel, shared.rows) == served_regimes(newer, panel, shared.rows)))
        decoded = [m.decode(shared.observations, shared.lengths) for m in (older, newer)]
        viterbi.append(np.mean(decoded[0] == decoded[1]))
    assert evaluation.extras["pairwise_agreement"] == pytest.approx(served, abs=1e-12)
    assert evaluation.metrics["label_agreement"] == pytest.approx(np.mean(served), abs=1e-12)
    assert evaluation.metrics["label_agreement_viterbi"] == pytest.approx(np.mean(viterbi), abs=1e-12)


def test_served_labels_are_what_the_service_answers(panel: Panel, fitted: Fitted) -> None:
    """For dates spread over both symbols, the first of them with less than a full context: the service's own answer
    (``regime_features`` of a client's window, ``posterior_last``) has the posterior ServedLabels computes."""
    model: RegimeModel = fitted.model
    rows = np.concatenate([np.arange(0, 40, 7), np.linspace(300, len(panel) - 1, 14).astype(int)])
    posteriors = ServedLabels(panel).posteriors(model, rows)
    for row, posterior in zip(rows, posteriors, strict=True):
        frame = panel.bars[panel.symbols[row]]
        bars = Bars.from_frame(frame.iloc[: panel.positions[row] + 1]).tail(DEFAULT_SPEC.lookback + REGIME_CONTEXT_ROWS)
        answer = model.posterior_last(model.observations(regime_features(bars), DEFAULT_SPEC.names))
        np.testing.assert_allclose(posterior, answer, atol=1e-9, err_msg=f"row {row}")
    labels = ServedLabels(panel).labels(model, rows)
    np.testing.assert_array_equal(labels, posteriors.argmax(axis=1))


def test_metrics_are_floats_and_the_baseline_is_reported(evaluation: Evaluation) -> None:
    assert evaluation.primary_metric == "label_agreement" and evaluation.higher_is_better
    assert set(evaluation.baselines) == {BASELINE}
    for scores in (evaluation.metrics, *evaluation.baselines.values()):
        assert scores and all(type(v) is float for v in scores.values()), scores
    baseline = evaluation.baselines[BASELINE]
    assert 0.0 < baseline["label_agreement"] <= 1.0
    # quantile bands of volatility switch far more often than the HMM's sticky regimes
    assert evaluation.metrics["switches_per_year"] < baseline["switches_per_year"]
    assert evaluation.beats(BASELINE) == (evaluation.metrics["label_agreement"] > baseline["label_agreement"])


def test_predictions_cover_every_complete_row(evaluation: Evaluation, panel: Panel) -> None:
    frame = evaluation.predictions
    for column in ("date", "symbol", "fold", "actual", "prediction", "state", "close", f"baseline_{BASELINE}"):
        assert column in frame.columns
    assert len(frame) == int(RegimeData.from_panel(panel).valid.sum())
    assert set(frame["state"]) <= set(NAMES)
    assert (frame["state"] == np.asarray(NAMES, dtype=object)[frame["prediction"].to_numpy()]).all()
    probabilities = frame[[f"p_{n}" for n in NAMES]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-9)
    assert (frame["fold"] == -1).all()


# --------------------------------------------------------------------------------------- (c) seed stability


def test_another_seed_gives_the_same_canonical_labels(
    panel: Panel, fitted: Fitted, everything: tuple[np.ndarray, list[int]], evaluation: Evaluation
) -> None:
    other = RegimeHMM(replace(CONFIG, seed=12345)).fit(panel)
    observations, lengths = everything
    same = np.mean(fitted.model.decode(observations, lengths) == other.model.decode(observations, lengths))
    assert same >= 0.95, same
    assert evaluation.metrics["seed_agreement"] >= 0.95


# ------------------------------------------------------------------------------------ (d) store round trip


def test_store_round_trip_decodes_identically(
    model_store: Path, fitted: Fitted, everything: tuple[np.ndarray, list[int]]
) -> None:
    trainer = RegimeHMM(CONFIG)
    metadata = {"hyperparameters": fitted.hyperparameters, "details": fitted.extra}
    assert_basic_json(metadata)
    saved = trainer.save(fitted, metadata, {"stage": "candidate"})
    tag = saved.tag
    stored = bentoml.models.get(tag)
    assert Path(stored.path).is_relative_to(model_store)
    assert stored.info.labels == {"stage": "candidate"}
    details: Any = stored.info.metadata["details"]
    assert details["state_names"] == list(NAMES)
    loaded = RegimeModel.load(stored.path)
    assert loaded == fitted.model
    observations, lengths = everything
    np.testing.assert_array_equal(loaded.decode(observations, lengths), fitted.model.decode(observations, lengths))
    np.testing.assert_array_equal(
        loaded.posteriors(observations, lengths), fitted.model.posteriors(observations, lengths)
    )
    window = observations[:250]
    np.testing.assert_array_equal(loaded.posterior_last(window), fitted.model.posterior_last(window))


def test_json_is_exact_and_self_describing(fitted: Fitted, tmp_path: Path) -> None:
    model: RegimeModel = fitted.model
    data = json.loads(json.dumps(model.to_dict()))
    assert data == model.to_dict()
    assert RegimeModel.from_dict(data) == model
    for key in ("startprob", "transmat", "means", "covars"):
        np.testing.assert_array_equal(np.asarray(data[key]), getattr(model, key))  # bit for bit
    assert [o["feature"] for o in data["observations"]] == ["ret_1", "rv_21"]
    assert model.save(tmp_path) == tmp_path / MODEL_FILE
    assert RegimeModel.load(tmp_path) == model
    with pytest.raises(ValueError, match="format"):
        RegimeModel.from_dict({**data, "format_version": 99})
    with pytest.raises(ValueError, match="transmat"):
        RegimeModel.from_dict({**data, "transmat": data["transmat"][:2]})


# ------------------------------------------------------------------------------- (e) permutation consistency


def test_canonicalising_keeps_the_likelihood(panel: Panel) -> None:
    sequences = RegimeData.from_panel(panel).sequences()
    x, lengths = sequences.observations, sequences.lengths
    fit = fit_hmm(sequences, n_states=3, restarts=1, n_iter=200, seed=0)
    assert fit.raw.score(x, lengths) == pytest.approx(fit.model.log_likelihood(x, lengths), rel=1e-10)

    # a raw model whose states are deliberately out of order: canonicalising must undo the permutation exactly
    scrambled = fit.model.permuted([2, 0, 1]).hmm()
    assert np.argsort(scrambled.means_[:, 1]).tolist() != [0, 1, 2]
    canonical = RegimeModel.from_hmm(scrambled)
    assert canonical == fit.model
    assert scrambled.score(x, lengths) == pytest.approx(canonical.log_likelihood(x, lengths), rel=1e-10)
    # scrambled state j is canonical state order[j]; canonical state c is scrambled state argsort(order)[c]
    order = np.asarray([2, 0, 1])
    np.testing.assert_array_equal(order[scrambled.predict(x, lengths)], canonical.decode(x, lengths))
    np.testing.assert_allclose(
        scrambled.predict_proba(x, lengths)[:, np.argsort(order)], canonical.posteriors(x, lengths), atol=1e-12
    )


# ------------------------------------------------------------------------------------------- serving helpers


def test_observations_from_a_bar_window(fitted: Fitted, embedded_bars: pd.DataFrame) -> None:
    model: RegimeModel = fitted.model
    frame = embedded_bars[embedded_bars["symbol"] == "^GSPC"].drop(columns="symbol").tail(300).reset_index(drop=True)
    features = DEFAULT_SPEC.compute(Bars.from_frame(validate_ohlcv(frame)))
    observations = model.observations(features, DEFAULT_SPEC.names)
    valid = model.valid_rows(features, DEFAULT_SPEC.names)
    assert observations.shape == (int(valid.sum()), 2)
    assert not valid[:21].any() and valid[21:].all()  # rv_21 needs 21 returns, nothing else is used
    names = list(DEFAULT_SPEC.names)
    np.testing.assert_array_equal(observations[:, 0], features[valid, names.index("ret_1")])
    np.testing.assert_array_equal(observations[:, 1], np.log(features[valid, names.index("rv_21")]))
    labels = model.decode(observations[-250:])
    assert labels.shape == (250,) and set(labels.tolist()) <= {0, 1, 2}
    last = model.posterior_last(observations[-250:])
    assert last.shape == (3,) and last.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="rv_21"):
        observation_matrix(features[:, :5], names[:5])


def test_posterior_last_is_the_forward_filter(fitted: Fitted, everything: tuple[np.ndarray, list[int]]) -> None:
    model: RegimeModel = fitted.model
    window = everything[0][1000:1250]
    hmm = model.hmm()
    emission = np.exp(hmm._compute_log_likelihood(window))
    alpha = model.startprob * emission[0]
    alpha /= alpha.sum()
    for t in range(1, len(window)):
        alpha = (alpha @ model.transmat) * emission[t]
        alpha /= alpha.sum()
    np.testing.assert_allclose(model.posterior_last(window), alpha, atol=1e-10)


def _windows(everything: tuple[np.ndarray, list[int]]) -> list[np.ndarray]:
    """Real windows of the first symbol: the served length (250), the whole history, and lengths around the filter's
    blocks of 32 rows."""
    first = everything[0][: everything[1][0]]
    return [first[1000:1250], first[-250:], first, *(first[2000 : 2000 + k] for k in (1, 2, 32, 33, 34, 65, 97))]


def _assert_matches_hmmlearn(model: RegimeModel, windows: list[np.ndarray]) -> float:
    hmm = model.hmm()
    worst = 0.0
    for window in windows:
        expected = hmm.predict_proba(window)[-1]
        got = model.posterior_last(window)
        assert np.isfinite(got).all() and got.sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10, err_msg=f"{len(window)} rows")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_posterior_last_equals_hmmlearn(
    covariance_type: str,
    fitted: Fitted,
    full_covariance: RegimeModel,
    everything: tuple[np.ndarray, list[int]],
) -> None:
    model: RegimeModel = fitted.model if covariance_type == "diag" else full_covariance
    assert model.covariance_type == covariance_type
    _assert_matches_hmmlearn(model, _windows(everything))


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_posterior_last_survives_outliers_and_impossible_states(
    covariance_type: str,
    fitted: Fitted,
    full_covariance: RegimeModel,
    everything: tuple[np.ndarray, list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows whose densities underflow for some states (|log density gaps| of 10^3), a zero start probability on the
    only state that explains the first row, and (below) states the chain cannot reach: no NaN, hmmlearn's answer."""
    fit: RegimeModel = fitted.model if covariance_type == "diag" else full_covariance
    window = everything[0][1000:1250].copy()
    window[0] = [-0.5, 2.0]  # a -40 % day at 700 % volatility: only "turbulent" comes close
    window[100] = [0.4, 2.5]
    window[101] = [-0.3, -6.0]
    gaps = fit.log_densities(window[[0, 100, 101]])
    assert (gaps.max(axis=1) - gaps.min(axis=1) > 745).all()  # exp() of the gap underflows to 0
    outliers = [window, window[:1], window[:2], window[:101], window[:102], window[:103], window[:140]]

    # the fitted chain, but the first row's state cannot start a sequence
    no_turbulent_start = RegimeModel(NAMES, [0.5, 0.5, 0.0], fit.transmat, fit.means, fit.covars, covariance_type)
    _assert_matches_hmmlearn(no_turbulent_start, outliers)

    # "turbulent" unreachable: at the outlier rows every reachable state's scaled density underflows to 0, so the
    # filter's blocked products lose their rows and those blocks must be redone row by row in the log domain
    transmat = [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 1.0]]
    unreachable = RegimeModel(NAMES, [0.5, 0.5, 0.0], transmat, fit.means, fit.covars, covariance_type)
    calls: list[int] = []
    step = regime_filter._log_domain_step

    def counted(prediction: np.ndarray, log_b: np.ndarray) -> np.ndarray:
        calls.append(1)
        return step(prediction, log_b)

    monkeypatch.setattr(regime_filter, "_log_domain_step", counted)
    _assert_matches_hmmlearn(unreachable, outliers)
    assert len(calls) > len(outliers), "the log-domain fallback was not exercised"
    last = unreachable.posterior_last(window[:101])
    assert last[2] == 0.0 and last.sum() == pytest.approx(1.0)


def test_serving_does_not_import_hmmlearn() -> None:
    """The service loads bentos.regime_model; hmmlearn (and scikit-learn, scipy.stats behind it) costs ~2 s of cold
    start, so only training and the hmmlearn-backed helpers may import it, lazily."""
    code = (
        "import sys, json, bentos.regime_model\n"
        "print(json.dumps(sorted(m for m in ('hmmlearn', 'sklearn', 'scipy.stats') if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def test_card_details_are_metadata_safe(fitted: Fitted) -> None:
    assert_basic_json(fitted.hyperparameters, "hyperparameters")
    assert_basic_json(fitted.extra, "extra")
    durations = fitted.extra["expected_durations"]
    stay = np.diag(np.asarray(fitted.extra["transition_matrix"]))
    np.testing.assert_allclose([durations[n] for n in NAMES], 1.0 / (1.0 - stay))
    assert all(d > 5 for d in durations.values())  # regimes last weeks, not days


def test_warm_start_from_a_previous_model(panel: Panel, fitted: Fitted, evaluation: Evaluation) -> None:
    refit = RegimeHMM(CONFIG, warm_start=fitted.model).fit(panel)
    assert refit.extra["candidates"] == CONFIG.hmm_restarts + 2  # equal-quantile + random starts + warm
    assert refit.extra["log_likelihood"] >= fitted.extra["log_likelihood"] - 1e-6 * fitted.extra["n_observations"]
    assert refit.model.state_names == fitted.model.state_names
    assert all(f["candidates"] == CONFIG.hmm_restarts + 1 for f in evaluation.folds)  # refits are independent
