"""The quant figures in the cards, the report and the gate of a real (quick) training run on the embedded data."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from tests.conftest import TABULAR
from training.flows.gate import gate, load_rules
from training.registry.card import ModelCard
from training.run import ModelResult, TrainingRun

SIGNAL_MODELS = ("return_lightgbm", "return_random_forest", "direction_lightgbm")


def test_every_signal_card_holds_its_ic_quantiles_and_after_cost_backtest(
    tabular_results: dict[str, ModelResult],
) -> None:
    for name in SIGNAL_MODELS:
        quant = tabular_results[name].card.quant
        assert quant is not None, name
        assert quant["ic"]["kind"] == "time_series"  # two indices: no cross-section to rank
        assert quant["ic"]["period"] == "year" and quant["ic"]["rank"]["periods"] == 2  # quick mode: two test years
        rank = quant["ic"]["rank"]
        assert rank["ci_low"] < rank["mean"] < rank["ci_high"]
        assert len(quant["quantiles"]["mean_realised"]) == 5
        strategies = quant["backtest"]["strategies"]
        assert set(strategies) >= {"long_flat", "buy_and_hold"}
        assert "long_short" not in strategies  # a long/short book needs a universe
        for strategy in strategies.values():
            returns = [strategy["by_cost"][c]["annual_return"] for c in ("0", "5", "15")]
            if strategy["by_cost"]["0"]["turnover_per_year"] > 0:
                assert returns[0] > returns[1] > returns[2]  # costs only take away
    calibration = tabular_results["direction_lightgbm"].card.quant["calibration"]
    assert sum(b["count"] for b in calibration["bins"]) == calibration["rows"] > 400
    horizon = tabular_results["direction_lightgbm"].card.quant["backtest"]["horizon"]
    assert horizon == 1  # the direction model trades its own (next-day) horizon


def test_the_volatility_card_compares_targeting_books_on_three_forecasts(
    tabular_results: dict[str, ModelResult],
) -> None:
    quant = tabular_results["volatility_lightgbm"].card.quant
    assert quant["ic"]["rank"]["evidence"] == "positive"  # volatility forecasts rank the weeks: the one real signal
    books = quant["vol_targeting"]["forecasts"]
    assert set(books) == {"model", "ewma", "garch", "har"}
    for book in books.values():
        assert 0 < book["tracking_rmse"] < 0.1 and book["symbol_years"] == 4  # 2 symbols x 2 test years


def test_the_quant_record_round_trips_through_the_card(tabular_results: dict[str, ModelResult]) -> None:
    card = tabular_results["direction_lightgbm"].card
    back = ModelCard.from_metadata(card.to_metadata())
    assert _same(back.quant, card.quant)


def test_the_report_has_a_quant_section_per_forecast_model(quick_run: TrainingRun) -> None:
    page = (quick_run.report_dir / "index.html").read_text()
    with_quant = sorted(r.name for r in quick_run.results if r.card.quant is not None)
    assert with_quant == sorted([*TABULAR, "regime_hmm"])
    assert page.count("In a quant&#x27;s terms") + page.count("In a quant's terms") == 5
    assert "no evidence of skill" in page or "positive evidence" in page
    assert "each test year labelled by the refit trained before it, as served" in page


def test_the_default_gate_requires_the_volatility_models_ic_evidence(tabular_results: dict[str, ModelResult]) -> None:
    rules = load_rules().quick
    result = tabular_results["volatility_lightgbm"]
    decision = gate(result.tag, result.card.to_metadata(), rules)
    checks = {c.rule: c for c in decision.checks}
    assert checks["ic_evidence"].passed, checks["ic_evidence"].detail
    metadata = editable(result.card)
    metadata["quant"]["ic"]["rank"] |= {"ci_low": -0.01, "mean": 0.05}
    refused = gate(result.tag, metadata, rules)
    assert not refused.passed and "no evidence of skill" in {c.rule: c for c in refused.checks}["ic_evidence"].detail


def test_a_rule_set_can_require_the_targeting_book_to_beat_ewma(tabular_results: dict[str, ModelResult]) -> None:
    rules = load_rules().quick.model_copy(update={"vol_targeting_must_beat": ["ewma"]})
    result = tabular_results["volatility_lightgbm"]
    metadata = editable(result.card)
    books = metadata["quant"]["vol_targeting"]["forecasts"]
    books["model"]["tracking_rmse"], books["ewma"]["tracking_rmse"] = 0.01, 0.02
    assert {c.rule: c.passed for c in gate(result.tag, metadata, rules).checks}["vol_targeting"]
    books["model"]["tracking_rmse"] = 0.03
    check = {c.rule: c for c in gate(result.tag, metadata, rules).checks}["vol_targeting"]
    assert not check.passed and "does not beat ewma" in check.detail
    del metadata["quant"]
    check = {c.rule: c for c in gate(result.tag, metadata, rules).checks}["vol_targeting"]
    assert not check.passed and "no volatility-targeting book" in check.detail


def editable(card: ModelCard) -> dict[str, Any]:
    """A card's metadata with ``quant`` as a mapping to edit (a version 7 card's form, which the gate still reads)."""
    metadata = card.to_metadata()
    return metadata | {"quant": json.loads(metadata["quant"])}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b) if not isinstance(a, float) else a == pytest.approx(b)
