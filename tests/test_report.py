"""The training run's report: every model beside its baselines, plots inline, metrics as JSON."""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path

from training.dataset import Panel
from training.evaluation.report import SYNTHETIC_BANNER, write_report
from training.evaluation.skill import skill_record
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


def test_report_says_for_every_model_whether_it_showed_skill(quick_run: TrainingRun) -> None:
    """The sentence the card tells every client, computed here from the walk-forward metrics themselves."""
    assert quick_run.report_dir is not None
    page = (quick_run.report_dir / "index.html").read_text()
    metrics = json.loads((quick_run.report_dir / "metrics.json").read_text())
    for result in quick_run.results:
        evaluation = result.evaluation
        expected = skill_record(evaluation.task, evaluation.metrics, evaluation.baselines)
        section = page.split(f"<h2>{result.name}</h2>")[1].split("<h2>")[0]
        if expected is None:
            assert "<b>Skill:</b> no baseline to beat" in section
            assert metrics["models"][result.name]["skill"] is None
            continue
        css = "better" if expected["shown"] else "worse"
        assert f"<p class='skill {css}'><b>Skill:</b> {html.escape(expected['statement'])}</p>" in section
        assert metrics["models"][result.name]["skill"] == {
            "shown": expected["shown"],
            "statement": expected["statement"],
        }


def section_of(page: str, name: str) -> str:
    return page.split(f"<h2>{name}</h2>")[1].split("<h2>")[0]


def test_report_shows_each_models_spread_across_symbols(quick_run: TrainingRun) -> None:
    assert quick_run.report_dir is not None
    page = (quick_run.report_dir / "index.html").read_text()
    metrics = json.loads((quick_run.report_dir / "metrics.json").read_text())
    for result in quick_run.results:
        section, spread = section_of(page, result.name), result.card.by_symbol
        if spread is None:
            assert "<b>By symbol:</b> no per-symbol figure" in section
            assert metrics["models"][result.name]["by_symbol"] is None
            continue
        assert f"<tr><th>{spread.metric} by symbol</th><th>median</th>" in section
        assert (
            f"<td><b>model</b></td><td>{spread.model.median:.4g}</td><td>{spread.model.worst_decile:.4g}</td>"
            in section
        )
        assert f"<td>{spread.baseline}</td><td>{spread.baseline_spread.median:.4g}</td>" in section
        wins = round(spread.beats_baseline_share * spread.scored)
        assert f"Beats {spread.baseline} on {wins} of {spread.scored} scored symbols" in section
        assert all(f"{w.symbol} ({w.model:.4g} vs {w.baseline:.4g})" in section for w in spread.worst)
        assert metrics["models"][result.name]["by_symbol"]["worst"][0]["symbol"] == spread.worst[0].symbol
        every = metrics["models"][result.name]["symbol_scores"]  # every symbol's figures, not only the worst
        assert every["metric"] == spread.metric and every["baseline"] == spread.baseline
        assert [(r["symbol"], r["model"], r["baseline"]) for r in every["scores"]] == sorted(
            (w.symbol, w.model, w.baseline) for w in spread.worst
        )
    assert metrics["synthetic"] is False
    assert "synthetic data" not in page


def test_a_report_on_a_synthetic_snapshot_says_so_at_the_top(
    quick_run: TrainingRun, quick_panel: Panel, tmp_path: Path
) -> None:
    synthetic = dataclasses.replace(quick_run, snapshot=dataclasses.replace(quick_run.snapshot, source="synthetic"))
    directory = write_report(synthetic, quick_panel, tmp_path / "report")
    page = (directory / "index.html").read_text()
    head = page.split("<h2>", 1)[0]
    assert "<h1>Training report (synthetic data)</h1>" in head
    assert SYNTHETIC_BANNER in head and "<b>synthetic data</b>" in SYNTHETIC_BANNER
    assert json.loads((directory / "metrics.json").read_text())["synthetic"] is True
