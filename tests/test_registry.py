"""Promotion is an explicit, recorded decision; rollback is one call; incomplete or stale models are refused."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import bentoml
import lightgbm as lgb
import numpy as np
import pytest

from training.registry.card import JSON_TEXT_FIELDS, ModelCard
from training.registry.promotion import PromotionError, Registry, RegistryBusyError
from training.registry.store import get_model
from training.run import ModelResult


def tiny_booster() -> lgb.Booster:
    rng = np.random.default_rng(0)
    return lgb.train({"verbose": -1, "num_threads": 1}, lgb.Dataset(rng.normal(size=(200, 3)), rng.normal(size=200)), 3)


def resave(result: ModelResult, **changes: object) -> str:
    """A new version of a model (card optionally modified), so tests never relabel the shared fixtures."""
    metadata = result.card.model_copy(update=changes).to_metadata()
    return str(bentoml.lightgbm.save_model(result.name, result.fitted.model, metadata=metadata).tag)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


def test_promote_records_production_and_history(registry: Registry, tabular_results: dict[str, ModelResult]) -> None:
    tags = [resave(tabular_results[n]) for n in ("return_lightgbm", "volatility_lightgbm")]
    assert registry.promote(tags, reason="test") == {t.split(":")[0]: t for t in tags}
    assert registry.production() == {t.split(":")[0]: t for t in tags}
    (event,) = registry.history()
    assert event["action"] == "promote" and event["reason"] == "test"
    assert event["changes"]["return_lightgbm"] == {"from": None, "to": tags[0]}
    assert get_model(tags[0]).labels["stage"] == "production"
    assert registry.promote(tags) == {}  # promoting what is already in production changes nothing


def test_rollback_restores_the_previous_version_again_and_again(
    registry: Registry, tabular_results: dict[str, ModelResult]
) -> None:
    model = tabular_results["return_lightgbm"]
    first, second, third = resave(model), resave(model), resave(model)
    for tag in (first, second, third):
        registry.promote([tag])
    assert registry.rollback(["return_lightgbm"]) == {"return_lightgbm": second}
    assert get_model(third).labels["stage"] == "retired"
    assert registry.rollback() == {"return_lightgbm": first}
    assert registry.production()["return_lightgbm"] == first
    with pytest.raises(PromotionError, match="no earlier production version"):
        registry.rollback(["return_lightgbm"])
    assert [e["action"] for e in registry.history()] == ["promote"] * 3 + ["rollback"] * 2


def test_incomplete_card_cannot_be_promoted(registry: Registry) -> None:
    tag = str(bentoml.lightgbm.save_model("return_lightgbm", tiny_booster(), metadata={"task": "x"}).tag)
    with pytest.raises(PromotionError, match=r"incomplete or malformed: .*feature_spec_hash"):
        registry.promote([tag])
    assert registry.production() == {}


def test_feature_spec_mismatch_cannot_be_promoted(registry: Registry, tabular_results: dict[str, ModelResult]) -> None:
    stale = resave(tabular_results["volatility_lightgbm"], feature_spec_hash="0123456789abcdef")
    with pytest.raises(PromotionError, match="FeatureSpec 0123456789abcdef"):
        registry.promote([resave(tabular_results["return_lightgbm"]), stale])
    assert registry.production() == {}  # all or none


def test_unknown_tags_and_duplicates_are_refused(registry: Registry, tabular_results: dict[str, ModelResult]) -> None:
    with pytest.raises(PromotionError, match="no model 'return_lightgbm:doesnotexist'"):
        registry.promote(["return_lightgbm:doesnotexist"])
    model = tabular_results["return_lightgbm"]
    with pytest.raises(PromotionError, match="one version per model"):
        registry.promote([resave(model), resave(model)])


def test_a_second_promoter_waits_then_says_who_holds_the_lock(
    registry: Registry, tabular_results: dict[str, ModelResult]
) -> None:
    tag = resave(tabular_results["return_lightgbm"])
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with registry.lock():
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    started = time.monotonic()
    with pytest.raises(RegistryBusyError, match=r"locked by pid \d+ since"):
        registry.promote([tag], timeout=0.3)
    assert time.monotonic() - started >= 0.3
    release.set()
    thread.join()
    assert registry.promote([tag])


def test_card_round_trips_through_metadata(tabular_results: dict[str, ModelResult]) -> None:
    result = tabular_results["direction_lightgbm"]
    assert ModelCard.from_metadata(get_model(result.tag).metadata) == ModelCard.from_metadata(result.card.to_metadata())


def test_the_cards_largest_fields_are_stored_as_json_text_and_read_back_the_same(
    tabular_results: dict[str, ModelResult],
) -> None:
    """``quant`` and ``drift_reference`` are one JSON text each in ``model.yaml`` (cheap for BentoML's YAML loader);
    the card reads back equal, and so does a version 7 card holding them as mappings."""
    result = tabular_results["volatility_lightgbm"]
    stored = get_model(result.tag).metadata
    assert all(isinstance(stored[name], str) for name in JSON_TEXT_FIELDS)
    assert result.card.quant is not None and result.card.drift_reference is not None
    card = ModelCard.from_metadata(stored)
    assert (card.quant, card.drift_reference) == (result.card.quant, result.card.drift_reference)
    older = {**stored, "card_version": 7} | {name: json.loads(stored[name]) for name in JSON_TEXT_FIELDS}
    assert ModelCard.from_metadata(older) == card.model_copy(update={"card_version": 7})


def test_a_model_stored_with_a_card_older_than_version_3_is_still_promoted(
    registry: Registry, tabular_results: dict[str, ModelResult]
) -> None:
    """A version 2 card (no per-symbol spread, no synthetic flag) reads, as the store's older models have it."""
    result = tabular_results["volatility_lightgbm"]
    metadata = result.card.to_metadata()
    del metadata["by_symbol"], metadata["synthetic"]
    metadata["card_version"] = 2
    tag = str(bentoml.lightgbm.save_model(result.name, result.fitted.model, metadata=metadata).tag)
    assert registry.promote([tag]) == {result.name: tag}
    card = ModelCard.from_metadata(get_model(tag).metadata)
    assert card.card_version == 2 and card.by_symbol is None and card.synthetic is False
