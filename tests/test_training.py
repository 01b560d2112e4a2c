"""The tabular models in quick mode: honest metrics beside baselines, complete cards, exact store round trips."""

from __future__ import annotations

import subprocess
import sys

import bentoml
import numpy as np
import pytest

from bentos.forest_model import CUSTOM_OBJECT as FOREST_NODES
from bentos.forest_model import FlatForest
from bentos.runners import load_runner
from features import DEFAULT_SPEC
from tests.conftest import TABULAR
from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.skill import skill_record
from training.models.direction_lightgbm import calibrate
from training.registry.card import ModelCard
from training.run import ModelResult, TrainingRun, trainer_class


@pytest.mark.parametrize("name", TABULAR)
def test_card_holds_every_field(tabular_results: dict[str, ModelResult], name: str) -> None:
    stored = bentoml.models.get(tabular_results[name].tag)
    card = ModelCard.from_metadata(stored.info.metadata)
    assert card.name == name
    assert card.feature_spec_hash == DEFAULT_SPEC.version_hash
    assert card.feature_names == list(DEFAULT_SPEC.names) and card.lookback == 251
    assert card.symbols == ["^GSPC", "^IXIC"] and card.date_start == "2010-01-04"
    assert card.walk_forward["folds"] == 2 and card.pooled
    assert set(card.baseline_metrics) and card.primary_metric in card.metrics
    assert card.library_versions["lightgbm"] and card.git_commit and card.training_seconds > 0
    # saved as a candidate; the session's production fixture may have promoted it since
    assert stored.info.labels["stage"] in {"candidate", "production"}
    assert stored.info.labels["task"] == card.task


def test_every_card_says_whether_its_model_showed_skill(quick_run: TrainingRun) -> None:
    """Every stored card but the regime HMM's carries ``skill`` exactly as the walk-forward metrics give it."""
    keys = {"shown": bool, "metric": str, "model": float, "baseline": str, "baseline_value": float, "statement": str}
    for result in quick_run.results:
        metadata = bentoml.models.get(result.tag).info.metadata
        evaluation = result.evaluation
        expected = skill_record(evaluation.task, evaluation.metrics, evaluation.baselines)
        if result.name == "regime_hmm":
            assert expected is None and "skill" not in metadata
            continue
        skill = metadata["skill"]
        assert {k: type(v) for k, v in skill.items()} == keys, result.name
        assert skill == expected, result.name
        assert skill["statement"].startswith(("skill over ", "no skill over ")), skill["statement"]
    volatility = next(r for r in quick_run.results if r.name == "volatility_lightgbm")
    assert bentoml.models.get(volatility.tag).info.metadata["skill"]["shown"] is True  # the task with real signal


def test_volatility_beats_ewma_and_garch(tabular_results: dict[str, ModelResult]) -> None:
    evaluation = tabular_results["volatility_lightgbm"].evaluation
    for baseline in ("ewma", "garch"):
        assert evaluation.beats(baseline, "mse")
        assert evaluation.metrics["correlation"] > evaluation.baselines[baseline]["correlation"]


def test_direction_and_returns_are_reported_honestly(tabular_results: dict[str, ModelResult]) -> None:
    direction = tabular_results["direction_lightgbm"].evaluation
    assert 0.4 < direction.metrics["auc"] < 0.6  # daily direction is close to a coin flip
    assert direction.baselines["majority"]["auc"] == 0.5 or direction.baselines["majority"]["auc"] < 0.6
    for name in ("return_lightgbm", "return_random_forest"):
        result = tabular_results[name]
        assert result.evaluation.metrics["r2_vs_mean"] < 0.03
        assert result.card.leakage_audit["passed"], result.card.leakage_audit


def test_direction_probabilities_are_calibrated(tabular_results: dict[str, ModelResult], quick_panel: Panel) -> None:
    result = tabular_results["direction_lightgbm"]
    predictions = result.evaluation.predictions
    assert predictions["prediction"].between(0.3, 0.7).all()
    assert abs(predictions["prediction"].mean() - predictions["actual"].mean()) < 0.03
    details = result.card.details
    assert details["decision_threshold"] == 0.5 and details["calibration"]["method"] == "platt"


def test_lightgbm_round_trip_gives_identical_predictions(
    tabular_results: dict[str, ModelResult], quick_panel: Panel
) -> None:
    rows = quick_panel.features[-300:]
    for name in ("return_lightgbm", "volatility_lightgbm"):
        result = tabular_results[name]
        booster = bentoml.lightgbm.load_model(result.tag)
        np.testing.assert_array_equal(booster.predict(rows), result.fitted.model.predict(rows))
    direction = tabular_results["direction_lightgbm"]
    loaded = bentoml.lightgbm.load_model(direction.tag)
    calibration = direction.card.details["calibration"]
    np.testing.assert_array_equal(
        calibrate(loaded.predict(rows), calibration["slope"], calibration["intercept"]),
        direction.fitted.model.predict(rows),
    )


def test_random_forest_round_trip_gives_identical_predictions(
    tabular_results: dict[str, ModelResult], quick_panel: Panel
) -> None:
    result = tabular_results["return_random_forest"]
    loaded = bentoml.sklearn.load_model(result.tag)
    rows = quick_panel.features[-300:]
    np.testing.assert_array_equal(loaded.predict(rows), result.fitted.model.predict(rows))


def test_served_runners_predict_what_the_trained_models_do(
    tabular_results: dict[str, ModelResult], quick_panel: Panel
) -> None:
    """The service predicts through LightGBM's C library and the forest's flat nodes: the same values, bit for bit.

    Rows one at a time (the fast one-row paths), a few together (flat forest, general booster call) and many
    (scikit-learn's forest, loaded for big batches), including rows with missing features.
    """
    rows = quick_panel.features[-300:].copy()
    rows[5, ::4] = np.nan
    rows[9, 0] = np.nan
    for name in TABULAR:
        result = tabular_results[name]
        runner = load_runner(name, bentoml.models.get(result.tag))
        trainer = trainer_class(name)(TrainingConfig.quick())  # what the walk-forward predicted with
        expected = np.asarray(trainer.predict(result.fitted.model, rows), dtype=np.float64)
        one_by_one = np.concatenate([runner.predict(rows[i : i + 1]) for i in range(0, 300, 10)])
        np.testing.assert_array_equal(one_by_one, expected[::10], err_msg=name)
        np.testing.assert_array_equal(runner.predict(rows[:40]), expected[:40], err_msg=name)
        np.testing.assert_array_equal(runner.predict(rows), expected, err_msg=name)


def test_forest_is_stored_with_its_flat_nodes(tabular_results: dict[str, ModelResult]) -> None:
    result = tabular_results["return_random_forest"]
    stored = bentoml.models.get(result.tag)
    flat = FlatForest(stored.custom_objects[FOREST_NODES])
    forest = result.fitted.model
    assert flat.n_trees == len(forest.estimators_) and flat.n_features == forest.n_features_in_
    assert flat.depth == max(e.tree_.max_depth for e in forest.estimators_)
    flat.check(forest, probes=256, seed=7)  # raises unless bit for bit equal, NaN rows included


def test_service_process_imports_no_hmmlearn(production_models: dict[str, str]) -> None:
    """Serving filters the HMM with its own numpy filter (bentos/regime_filter.py): hmmlearn is imported to fit only.

    The boosters go through the lightgbm package, which imports scikit-learn (bentos/runners.py says why).
    """
    code = (
        "import sys, bentoml\n"
        "import bentos.inputs\n"
        "from bentos.runners import load_runner\n"
        f"tags = {production_models!r}\n"
        "for name, tag in tags.items():\n"
        "    load_runner(name, bentoml.models.get(tag))\n"
        "heavy = sorted(m for m in ('hmmlearn',) if m in sys.modules)\n"
        "print('imported:', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported: []" in done.stdout, done.stdout + done.stderr[-2000:]


def test_feature_importances_cover_the_spec(tabular_results: dict[str, ModelResult]) -> None:
    importance = tabular_results["volatility_lightgbm"].evaluation.extras["feature_importance"]
    assert list(importance) == list(DEFAULT_SPEC.names)
    assert sum(importance.values()) == pytest.approx(1.0)
    # no claim on the top feature: the level of volatility comes from the anchor (rv_5, rv_21, rv_63), and the trees
    # only correct it (tests/test_volatility_anchor.py shows the forecast follows the anchor)
