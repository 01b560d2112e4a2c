"""The six models are declared once (features/catalog.py); every place that lists models reads that declaration."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from features.catalog import MODEL_NAMES, MODELS, PER_ROW_MODELS, model_kind

ROOT = Path(__file__).resolve().parents[1]


def test_six_models_with_unique_names() -> None:
    assert len(MODELS) == 6 and len(set(MODEL_NAMES)) == 6
    assert tuple(n for n in MODEL_NAMES if n != "price_prophet") == PER_ROW_MODELS


def test_unknown_model_names_the_six() -> None:
    with pytest.raises(KeyError, match=r"return_lightgbm, return_random_forest, .*regime_hmm"):
        model_kind("nope")


def test_each_trainer_is_the_class_the_catalog_names() -> None:
    from training.run import trainer_class

    for kind in MODELS:
        assert trainer_class(kind.name).name == kind.name


def test_every_runtime_has_a_runner() -> None:
    from bentos.runners import RUNNERS

    assert {kind.runtime for kind in MODELS} == set(RUNNERS)


def test_the_service_declares_a_stored_model_for_each_of_the_six() -> None:
    """BentoML reads a service's models from class attributes, so the service names them; they must be the six."""
    tree = ast.parse((ROOT / "bentos" / "service.py").read_text())
    service = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "MarketModels")
    declared = [
        target.id
        for node in service.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", "") == "BentoModel"
        for target in node.targets
        if isinstance(target, ast.Name)
    ]
    assert declared == list(MODEL_NAMES)


def test_no_other_module_spells_out_the_list() -> None:
    """A literal tuple or list holding three or more model names is a second list of the models."""
    offenders = []
    for package in ("bentos", "data", "deploy", "training", "cli", "features"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "catalog.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                    items = node.keys if isinstance(node, ast.Dict) else node.elts
                    names = [i.value for i in items if isinstance(i, ast.Constant) and i.value in MODEL_NAMES]
                    if len(names) >= 3:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"read features.catalog instead of listing the models: {offenders}"
