"""The serving paths issue 13 kept or removed: each equal to its library's answer, each in one implementation.

- The regime HMM's forward filter (``bentos/regime_filter.py``, kept): the service's one window and batch inference's
  every date go through the same function, equal to hmmlearn's ``predict_proba(window)[-1]``, outliers and
  impossible states included, and a date's answer does not depend on where a file's chunks start.
- The boosters (the ctypes binding removed): served through the ``lightgbm`` package; the service never imports
  hmmlearn (its filter is numpy).
- The direction model's calibration: one implementation (``bentos/direction_calibration.py``) that the trainer and
  the runner share.
- The feature-value limit: one check (``bentos/feature_limit.py``) for the service and batch inference.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bentos import regime_filter
from bentos.batch_scoring import RegimeFilter
from bentos.direction_calibration import PlattCalibration, calibrate
from bentos.feature_limit import FEATURE_LIMIT, beyond_limit, beyond_limit_message
from bentos.regime_model import RegimeModel, observation_matrix
from features import DEFAULT_SPEC, Bars, validate_ohlcv

LOOKBACK = DEFAULT_SPEC.lookback
CONTEXT = 250
NAMES = ("calm", "normal", "turbulent")


@pytest.fixture(scope="module")
def features(embedded_bars: pd.DataFrame) -> np.ndarray:
    """The feature rows of every S&P 500 bar."""
    frame = embedded_bars[embedded_bars["symbol"] == "^GSPC"].drop(columns="symbol").reset_index(drop=True)
    return DEFAULT_SPEC.compute(Bars.from_frame(validate_ohlcv(frame)))


def fitted(features: np.ndarray, covariance_type: str) -> RegimeModel:
    """A 3-state HMM fitted by hmmlearn on the S&P 500's observations, in canonical form."""
    from hmmlearn.hmm import GaussianHMM

    values, complete = observation_matrix(features[LOOKBACK:], DEFAULT_SPEC.names)
    hmm = GaussianHMM(n_components=3, covariance_type=covariance_type, n_iter=40, random_state=0)
    return RegimeModel.from_hmm(hmm.fit(values[complete]))


@pytest.fixture(scope="module", params=["diag", "full"])
def model(request: pytest.FixtureRequest, features: np.ndarray) -> RegimeModel:
    return fitted(features, request.param)


def hmmlearn_last(model: RegimeModel, observations: np.ndarray) -> np.ndarray:
    """The library's answer: the smoothed posterior at the last row (= the filtered one)."""
    return np.asarray(model.hmm().predict_proba(observations)[-1])


def every_date(model: RegimeModel, features: np.ndarray, chunks: list[int] | None = None) -> np.ndarray:
    """Batch inference's regime of every date from the lookback on, the history cut into segments at ``chunks``."""
    regime = RegimeFilter(model, CONTEXT, LOOKBACK)
    cuts = [LOOKBACK, *(chunks or []), features.shape[0]]
    segments = []
    for first_emitted, end in itertools.pairwise(cuts):
        first = max(LOOKBACK, first_emitted - CONTEXT + 1)  # the first emitted row's first context row
        observations, valid = regime.observations(features[first:end])
        segments.append((first, regime.emissions(observations, valid), valid, end - first_emitted))
    return regime.posteriors(segments)


def context_of(model: RegimeModel, features: np.ndarray, position: int) -> np.ndarray:
    """The service's observations for a window ending at ``position``: its last complete rows, up to CONTEXT."""
    return model.observations(features[max(LOOKBACK, position - CONTEXT + 1) : position + 1], DEFAULT_SPEC.names)


def test_one_window_equals_hmmlearn_at_every_length(model: RegimeModel, features: np.ndarray) -> None:
    observations = model.observations(features[LOOKBACK:], DEFAULT_SPEC.names)
    # the service's 250 rows, the whole history, and lengths around the sub-blocks (16 steps for 250 rows)
    for rows in (1, 2, 3, 16, 17, 18, 33, 249, 250, 251, 1000, observations.shape[0]):
        window = observations[-rows:]
        got = model.posterior_last(window)
        assert np.isfinite(got).all() and got.sum() == pytest.approx(1.0, abs=1e-12), rows
        np.testing.assert_allclose(got, hmmlearn_last(model, window), rtol=0, atol=1e-10, err_msg=f"{rows} rows")


def test_every_date_equals_hmmlearn_and_the_service(model: RegimeModel, features: np.ndarray) -> None:
    batch = every_date(model, features)
    assert batch.shape == (features.shape[0] - LOOKBACK, 3) and np.isfinite(batch).all()
    for position in [*range(LOOKBACK, LOOKBACK + 260), *range(LOOKBACK + 260, features.shape[0], 53)]:
        context = context_of(model, features, position)
        expected = hmmlearn_last(model, context)
        np.testing.assert_allclose(batch[position - LOOKBACK], expected, rtol=0, atol=1e-10, err_msg=str(position))
        np.testing.assert_allclose(batch[position - LOOKBACK], model.posterior_last(context), rtol=0, atol=1e-12)


def test_a_date_does_not_depend_on_where_the_chunks_start(model: RegimeModel, features: np.ndarray) -> None:
    whole = every_date(model, features)
    for chunks in ([LOOKBACK + 1], [LOOKBACK + 249, LOOKBACK + 250, 2000], [*range(600, features.shape[0], 777)]):
        np.testing.assert_array_equal(every_date(model, features, chunks), whole, err_msg=str(chunks))


def test_outliers_and_impossible_states_take_the_log_domain_and_match_hmmlearn(
    model: RegimeModel, features: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows whose densities underflow for some states (log density gaps over 745), a zero start probability on the
    only state that explains the first row, states the chain cannot reach: no NaN, hmmlearn's answer, in the
    service's window and in every date of a batch, through the row-by-row fallback where the products lose them."""
    observations = model.observations(features[LOOKBACK:], DEFAULT_SPEC.names)[1000:1400].copy()
    observations[0] = [-0.5, 2.0]  # a -40 % day at 700 % volatility: only "turbulent" comes close
    observations[100] = [0.4, 2.5]
    observations[101] = [-0.3, -6.0]
    gaps = model.log_densities(observations[[0, 100, 101]])
    assert (gaps.max(axis=1) - gaps.min(axis=1) > 745).all()  # exp() of the gap underflows to 0
    unreachable = [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.0, 1.0]]
    models = {
        "no turbulent start": RegimeModel(
            NAMES, [0.5, 0.5, 0.0], model.transmat, model.means, model.covars, model.covariance_type
        ),
        "turbulent unreachable": RegimeModel(
            NAMES, [0.5, 0.5, 0.0], unreachable, model.means, model.covars, model.covariance_type
        ),
    }
    calls: list[int] = []
    step = regime_filter._log_domain_step

    def counted(prediction: np.ndarray, log_b: np.ndarray) -> np.ndarray:
        calls.append(1)
        return step(prediction, log_b)

    monkeypatch.setattr(regime_filter, "_log_domain_step", counted)
    for label, case in models.items():
        for rows in (1, 2, 101, 102, 103, 140, 250):
            window = observations[:rows]
            np.testing.assert_allclose(
                case.posterior_last(window), hmmlearn_last(case, window), rtol=0, atol=1e-10, err_msg=f"{label} {rows}"
            )
        valid = np.ones(observations.shape[0], dtype=bool)
        regime = RegimeFilter(case, CONTEXT, 0)
        batch = regime.posteriors([(0, regime.emissions(observations, valid), valid, observations.shape[0])])
        for t in range(observations.shape[0]):
            expected = hmmlearn_last(case, observations[max(0, t - CONTEXT + 1) : t + 1])
            np.testing.assert_allclose(batch[t], expected, rtol=0, atol=1e-10, err_msg=f"{label} date {t}")
    assert len(calls) > 1000, "the log-domain fallback was not exercised"
    last = models["turbulent unreachable"].posterior_last(observations[:101])
    assert last[2] == 0.0 and last.sum() == pytest.approx(1.0)


def test_a_context_without_complete_rows_is_unknown(model: RegimeModel) -> None:
    regime = RegimeFilter(model, CONTEXT, LOOKBACK)
    observations = np.full((CONTEXT, 2), -np.inf)
    valid = np.zeros(CONTEXT, dtype=bool)
    assert np.isnan(regime.posteriors([(LOOKBACK, regime.emissions(observations, valid), valid, 3)])).all()


def test_serving_predicts_through_lightgbm_and_never_imports_hmmlearn(production_models: dict[str, str]) -> None:
    """Issue 13 removed the ctypes binding: boosters are ``lightgbm.Booster`` objects (whose package imports
    scikit-learn); the regime filter stays numpy, so hmmlearn is never imported to serve."""
    code = (
        "import sys, bentoml, lightgbm\n"
        "from bentos.runners import load_runner\n"
        f"tags = {production_models!r}\n"
        "runners = {name: load_runner(name, bentoml.models.get(tag)) for name, tag in tags.items()}\n"
        "boosters = [runners[n].booster for n in ('return_lightgbm', 'direction_lightgbm', 'volatility_lightgbm')]\n"
        "print('boosters:', all(isinstance(b, lightgbm.Booster) for b in boosters))\n"
        "print('hmmlearn:', 'hmmlearn' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "boosters: True" in done.stdout and "hmmlearn: False" in done.stdout, done.stdout + done.stderr[-2000:]


def test_the_runner_calibrates_with_the_trainers_calibration(production_models: dict[str, str]) -> None:
    import bentoml

    from bentos.runners import DirectionRunner, load_runner

    stored = bentoml.models.get(production_models["direction_lightgbm"])
    runner = load_runner("direction_lightgbm", stored)
    assert isinstance(runner, DirectionRunner)
    details: dict[str, Any] = stored.info.metadata["details"]
    assert runner.calibration == PlattCalibration.from_card(details["calibration"])
    assert runner.calibration.card() == details["calibration"]
    rows = np.random.default_rng(0).normal(size=(50, len(DEFAULT_SPEC.names))) * 0.02
    raw = runner.booster.predict(rows)
    expected = calibrate(raw, details["calibration"]["slope"], details["calibration"]["intercept"])
    np.testing.assert_array_equal(runner.predict(rows), expected)
    np.testing.assert_array_equal(np.concatenate([runner.predict(row[None]) for row in rows]), expected)


@pytest.mark.parametrize(
    "card",
    [{}, {"method": "isotonic", "slope": 1.0, "intercept": 0.0}, {"method": "platt", "slope": "x", "intercept": 0}],
)
def test_an_unusable_calibration_is_refused(card: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no usable Platt calibration"):
        PlattCalibration.from_card(card)


def test_the_feature_limit_names_the_features_beyond_it_and_lets_missing_values_pass() -> None:
    row = np.zeros(len(DEFAULT_SPEC.names))
    row[3], row[5] = np.nan, np.inf
    row[7] = -2 * FEATURE_LIMIT
    assert beyond_limit(np.stack([row, np.zeros_like(row)])).tolist() == [True, False]
    assert not beyond_limit(np.where(np.isnan(row), np.nan, 0.0))
    message = beyond_limit_message(row)
    names = DEFAULT_SPEC.names
    assert f"{names[5]}=inf" in message and f"{names[7]}=-6.81e+38" in message and f"{names[3]}=" not in message
