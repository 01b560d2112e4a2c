"""Per-symbol evaluation: the spread across symbols of each model's walk-forward metric beside its best baseline's."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from data.snapshots import SnapshotInfo, SnapshotStore
from training.config import TrainingConfig
from training.dataset import Panel
from training.evaluation.audit import leakage_audit
from training.evaluation.symbols import MIN_SCORED_ROWS, WITHOUT_SYMBOL_FIGURE, worst_decile
from training.evaluation.walk_forward import Evaluation
from training.models.return_lightgbm import ReturnLightGBM
from training.registry.card import (
    CARD_VERSION,
    TASKS_WITHOUT_SYMBOL_FIGURE,
    IncompleteCardError,
    ModelCard,
    build_card,
)
from training.registry.store import get_model
from training.run import TrainingRun, train, trainer_class

from .conftest import perturbed


def evaluation(task: str, metric: str, higher: bool, frame: pd.DataFrame, baselines: dict) -> Evaluation:
    return Evaluation("m", task, metric, higher, {metric: 0.0}, baselines, [], frame)


def price_rows(symbol: str, model_error: float, walk_error: float, rows: int = MIN_SCORED_ROWS) -> pd.DataFrame:
    """A symbol's forecasts of a price of 100: the model off by ``model_error`` %, the random walk by ``walk_error``."""
    return pd.DataFrame(
        {
            "date": pd.bdate_range("2018-01-02", periods=rows),
            "symbol": symbol,
            "fold": 0,
            "actual": 100.0,
            "prediction": 100.0 + model_error,
            "baseline_random_walk": 100.0 - walk_error,
        }
    )


def test_price_forecast_errors_spread_exactly_and_unscorable_symbols_are_named() -> None:
    frame = pd.concat(
        [price_rows(f"S{k:02d}", float(k), 5.0) for k in range(1, 11)]
        + [price_rows("SHORT", 1.0, 5.0, rows=MIN_SCORED_ROWS - 1)],
        ignore_index=True,
    )
    pooled = {"random_walk": {"mape": 5.0}}
    spread = evaluation("price_forecast", "mape", False, frame, pooled).by_symbol(
        symbols=[*frame["symbol"].unique(), "LATE"]
    )
    assert spread is not None
    assert spread["metric"] == "mape" and spread["baseline"] == "random_walk"
    assert spread["symbols"] == 12 and spread["scored"] == 10 and spread["worst_decile_quantile"] == 0.9
    assert spread["model"] == {"median": pytest.approx(5.5), "worst_decile": pytest.approx(9.1)}  # MAPE 1..10 %
    assert spread["baseline_spread"] == {"median": pytest.approx(5.0), "worst_decile": pytest.approx(5.0)}
    assert spread["beats_baseline_share"] == 0.4  # 1..4 % beat 5 %; the tie at 5 % does not
    assert [w["symbol"] for w in spread["worst"]] == ["S10", "S09", "S08", "S07", "S06"]
    assert spread["worst"][0] == {
        "symbol": "S10",
        "rows": MIN_SCORED_ROWS,
        "model": pytest.approx(10.0),
        "baseline": pytest.approx(5.0),
        "shortfall": pytest.approx(1.0),  # twice the random walk's error
    }
    assert spread["unscored"] == {
        "LATE": "no walk-forward prediction",
        "SHORT": f"{MIN_SCORED_ROWS - 1} rows answered by the model and every baseline, fewer than {MIN_SCORED_ROWS}",
    }


def test_return_r2_by_symbol_with_the_trainers_own_scoring() -> None:
    """Predictions k × actual against a historical mean of 0: R² against the mean is 1 - (1 - k)² on every symbol."""
    actual = np.tile([0.01, -0.01], MIN_SCORED_ROWS)
    parts = []
    for symbol, k in {"A": 1.0, "B": 0.5, "C": 0.0, "D": -1.0, "E": 2.5}.items():
        parts.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "actual": actual,
                    "prediction": k * actual,
                    "baseline_zero": 0.0,
                    "baseline_historical_mean": 0.0,
                }
            )
        )
    gappy = parts[0].assign(symbol="GAPPY")
    gappy.loc[: len(gappy) - MIN_SCORED_ROWS // 2, "baseline_historical_mean"] = np.nan  # a late baseline
    frame = pd.concat([*parts, gappy], ignore_index=True)
    pooled = {"zero": {"r2_vs_mean": -0.002}, "historical_mean": {"r2_vs_mean": 0.0}}
    trainer = ReturnLightGBM(TrainingConfig.quick())
    spread = evaluation("return_regression", "r2_vs_mean", True, frame, pooled).by_symbol(trainer.score_all)
    assert spread is not None
    assert spread["baseline"] == "historical_mean"  # the best on the pooled metric
    assert spread["scored"] == 5 and spread["symbols"] == 6 and list(spread["unscored"]) == ["GAPPY"]
    # R² 1, 0.75, 0, -3, -1.25: sorted -3, -1.25, 0, 0.75, 1
    assert spread["model"] == {"median": pytest.approx(0.0), "worst_decile": pytest.approx(-2.3)}
    assert spread["baseline_spread"] == {"median": 0.0, "worst_decile": 0.0}
    assert spread["beats_baseline_share"] == 0.4  # A and B; C ties
    assert [w["symbol"] for w in spread["worst"]] == ["D", "E", "C", "B", "A"]
    assert [w["model"] for w in spread["worst"]] == pytest.approx([-3.0, -1.25, 0.0, 0.75, 1.0])


def test_the_worst_decile_is_the_low_tail_of_a_score_and_the_high_tail_of_an_error() -> None:
    values = list(range(11))
    assert worst_decile(values, higher_is_better=True) == 1.0
    assert worst_decile(values, higher_is_better=False) == 9.0
    assert np.isnan(worst_decile([], higher_is_better=True))


def test_every_card_of_the_quick_run_holds_the_spread_of_its_model(quick_run: TrainingRun) -> None:
    assert quick_run.ok, quick_run.failures
    symbols = quick_run.snapshot.symbols
    for result in quick_run.results:
        card = result.card
        assert card.card_version == CARD_VERSION and card.synthetic is False
        if result.evaluation.task in WITHOUT_SYMBOL_FIGURE:
            assert card.by_symbol is None and "by_symbol" not in card.to_metadata()
            continue
        spread = card.by_symbol
        assert spread is not None, result.name
        assert spread.metric == card.primary_metric and spread.baseline in card.baseline_metrics
        assert spread.symbols == spread.scored == len(symbols) and spread.unscored == {}
        assert {w.symbol for w in spread.worst} == set(symbols)
        values = [w.model for w in spread.worst]
        assert spread.model.median == pytest.approx(np.median(values))
        assert spread.model.worst_decile == pytest.approx(worst_decile(values, card.higher_is_better))
        wins = [(w.model > w.baseline) if card.higher_is_better else (w.model < w.baseline) for w in spread.worst]
        assert spread.beats_baseline_share == pytest.approx(np.mean(wins))
        stored = ModelCard.from_metadata(get_model(result.tag).metadata)
        assert stored.by_symbol == spread
        table = result.evaluation.symbol_scores  # every symbol's figures, kept for the report
        assert table is not None and table.baseline == spread.baseline
        assert table.scores["symbol"].tolist() == sorted(symbols)
        won = {w.symbol: win for w, win in zip(spread.worst, wins, strict=True)}
        assert table.scores["beats"].tolist() == [won[s] for s in sorted(symbols)]


def test_the_per_symbol_figures_are_the_pooled_definitions_on_each_symbols_rows(quick_run: TrainingRun) -> None:
    """Recomputed by hand from the walk-forward predictions: volatility MSE (rows where all are > 0), Prophet MAPE."""
    results = {r.name: r for r in quick_run.results}
    volatility = results["volatility_lightgbm"]
    frame = volatility.evaluation.predictions
    forecasts = ["actual", "prediction", "baseline_ewma", "baseline_garch", "baseline_har"]
    assert volatility.card.by_symbol is not None
    baseline = volatility.card.by_symbol.baseline
    for entry in volatility.card.by_symbol.worst:
        part = frame[frame["symbol"] == entry.symbol]
        part = part[(part[forecasts] > 0).all(axis=1)]
        assert entry.rows == len(part)
        assert entry.model == pytest.approx(np.mean((part["actual"] - part["prediction"]) ** 2))
        assert entry.baseline == pytest.approx(np.mean((part["actual"] - part[f"baseline_{baseline}"]) ** 2))
    prophet = results["price_prophet"]
    frame = prophet.evaluation.predictions
    assert prophet.card.by_symbol is not None and prophet.card.by_symbol.baseline == "random_walk"
    for entry in prophet.card.by_symbol.worst:
        part = frame[frame["symbol"] == entry.symbol]
        assert entry.model == pytest.approx(100 * np.mean(np.abs(part["prediction"] / part["actual"] - 1)))
        assert entry.baseline == pytest.approx(100 * np.mean(np.abs(part["baseline_random_walk"] / part["actual"] - 1)))


def test_a_card_built_on_a_synthetic_snapshot_says_so(
    quick_run: TrainingRun, quick_panel: Panel, embedded_snapshot: tuple[SnapshotStore, SnapshotInfo]
) -> None:
    result = next(r for r in quick_run.results if r.name == "return_lightgbm")
    trainer = trainer_class(result.name)(quick_run.config)
    _, info = embedded_snapshot

    def card_on(snapshot: SnapshotInfo) -> ModelCard:
        return build_card(
            trainer=trainer,
            evaluation=result.evaluation,
            fitted=result.fitted,
            spec=quick_panel.spec,
            snapshot=snapshot,
            panel_dates=quick_panel.dates,
            audit=leakage_audit(result.evaluation),
            training_seconds=1.0,
            horizon=trainer.horizon,
        )

    assert card_on(info).synthetic is False
    synthetic = card_on(dataclasses.replace(info, source="synthetic"))
    assert synthetic.synthetic is True and synthetic.to_metadata()["synthetic"] is True
    assert synthetic.by_symbol == result.card.by_symbol


def test_a_card_older_than_the_spread_still_reads(quick_run: TrainingRun) -> None:
    for result in quick_run.results:
        metadata = result.card.to_metadata()
        for field in ("by_symbol", "synthetic"):
            metadata.pop(field, None)
        metadata["card_version"] = 2
        old = ModelCard.from_metadata(metadata)
        assert old.by_symbol is None and old.synthetic is False and old.card_version == 2


def test_a_spread_on_a_regime_card_or_a_malformed_one_is_refused(quick_run: TrainingRun) -> None:
    assert set(WITHOUT_SYMBOL_FIGURE) == TASKS_WITHOUT_SYMBOL_FIGURE  # the card's rule and the evaluation's agree
    results = {r.name: r for r in quick_run.results}
    spread = results["volatility_lightgbm"].card.to_metadata()["by_symbol"]
    stray = {**results["regime_hmm"].card.to_metadata(), "by_symbol": spread}
    with pytest.raises(IncompleteCardError, match="no per-symbol figure"):
        ModelCard.from_metadata(stray)
    malformed = {**results["volatility_lightgbm"].card.to_metadata(), "by_symbol": {**spread, "scored": "many"}}
    with pytest.raises(IncompleteCardError, match=r"by_symbol\.scored"):
        ModelCard.from_metadata(malformed)


def test_a_symbol_listed_too_late_for_a_model_is_named_on_its_card(
    embedded_bars: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A real run on the two indices and a copy of the S&P 500 from June 2016: too short a history for Prophet's test
    years (500 bars before each), long enough for the volatility model's. Prophet's card counts and names it."""
    store = SnapshotStore(tmp_path_factory.mktemp("late-listing"))
    spx = embedded_bars[embedded_bars["symbol"] == "^GSPC"]
    info, _ = store.write(
        pd.concat([embedded_bars, perturbed(spx, "LATE", "2016-06-01", 3)], ignore_index=True), source="test"
    )
    run = train(
        info.id,
        names=("price_prophet", "volatility_lightgbm"),
        config=TrainingConfig.quick(),
        store=store,
        reports_root=tmp_path_factory.mktemp("late-reports"),
    )
    assert run.ok, run.failures
    cards = {r.name: r.card for r in run.results}
    prophet, volatility = cards["price_prophet"].by_symbol, cards["volatility_lightgbm"].by_symbol
    assert prophet is not None and volatility is not None
    assert prophet.symbols == 3 and prophet.scored == 2
    assert list(prophet.unscored) == ["LATE"]
    assert re.fullmatch(
        r"no walk-forward prediction \(\d{3} bars before 2018-01-01, fewer than 500\)", prophet.unscored["LATE"]
    )
    assert "LATE" not in {w.symbol for w in prophet.worst}
    assert volatility.symbols == volatility.scored == 3 and "LATE" in {w.symbol for w in volatility.worst}
    assert run.report_dir is not None
    assert f"Not scored: LATE: {prophet.unscored['LATE']}." in (run.report_dir / "index.html").read_text()
