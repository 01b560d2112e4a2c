"""The training run's report: every model beside its baselines, plots inline, metrics as JSON."""

from __future__ import annotations

import json

from training.registry.store import MODEL_NAMES
from training.run import TrainingRun, summary


def test_report_shows_every_model_beside_its_baselines(quick_run: TrainingRun) -> None:
    assert quick_run.ok, quick_run.failures
    assert quick_run.report_dir is not None
    page = (quick_run.report_dir / "index.html").read_text()
    for result in quick_run.results:
        assert f"<h2>{result.name}</h2>" in page
        for baseline in result.evaluation.baselines:
            assert f"<td>{baseline}</td>" in page
    assert page.count("data:image/png;base64,") >= 12  # predictions, importances, calibration, fans, regimes
    assert "beats ewma" in page and "beats garch" in page


def test_metrics_json_holds_every_model(quick_run: TrainingRun) -> None:
    assert quick_run.report_dir is not None
    metrics = json.loads((quick_run.report_dir / "metrics.json").read_text())
    assert set(metrics["models"]) == set(MODEL_NAMES)
    volatility = metrics["models"]["volatility_lightgbm"]
    assert volatility["metrics"]["mse"] < volatility["baselines"]["ewma"]["mse"]
    assert metrics["snapshot"]["id"] == quick_run.snapshot.id
    assert metrics["config"]["quick_mode"] is True


def test_summary_names_models_and_report(quick_run: TrainingRun) -> None:
    result = summary(quick_run)
    assert set(result["models"]) == set(MODEL_NAMES)
    assert result["failures"] == {}
    assert result["report"].endswith(quick_run.run_id)
