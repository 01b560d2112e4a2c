"""One truth for "production": after a promotion, the source tree serves and scores what the registry says,
without a build; a built Bento keeps the versions it shipped; the build works from a checkout under a hidden folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bentoml
import pandas as pd
import pytest

from bentos.production import ProductionManifestError, production_tags, read_registry
from deploy.bento import BentoBuildError, build, build_context
from tests.integration_helpers import served
from tests.test_faults import child_env, copy_models, run

ROOT = Path(__file__).resolve().parents[1]
PROMOTE = """
    import json, os
    from training.registry.promotion import Registry

    print(json.dumps(Registry().promote(json.loads(os.environ["TAGS"]), reason="production test")))
"""
BATCH_DEFAULT = """
    import json
    from bentos.batch import production_manifest

    print(json.dumps(production_manifest()))
"""


@pytest.fixture(scope="module")
def promoted_home(tmp_path_factory: pytest.TempPathFactory, production_models: dict[str, str]) -> Path:
    """A BentoML home whose registry (not a manifest) has the session's six models in production."""
    home = copy_models(production_models, tmp_path_factory.mktemp("one-truth") / "bentoml")
    run(PROMOTE, {**child_env(BENTOML_HOME=home), "TAGS": json.dumps(list(production_models.values()))})
    return home


def without_manifest(home: Path) -> dict[str, str]:
    env = child_env(BENTOML_HOME=home)
    env.pop("MLOPS_PRODUCTION_FILE", None)
    return env


def test_nothing_in_production_is_named_with_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    with pytest.raises(ProductionManifestError, match="mlops train --promote"):
        production_tags()


def test_the_source_tree_holds_no_manifest() -> None:
    assert not (ROOT / "bentos" / "production.json").exists()


@pytest.mark.integration
def test_promoted_models_are_scored_by_batch_without_a_build(
    promoted_home: Path, production_models: dict[str, str], tmp_path: Path
) -> None:
    env = without_manifest(promoted_home)
    assert run(BATCH_DEFAULT, env) == production_models
    registry = read_registry(promoted_home / "mlops" / "production.json")
    assert registry == production_models
    bars = pd.DataFrame(json.loads((ROOT / "bentos" / "examples" / "sp500_window.json").read_text())).assign(
        symbol="^GSPC"
    )
    bars.to_csv(tmp_path / "bars.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "batch", str(tmp_path / "bars.csv"), str(tmp_path / "out.parquet")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(pd.read_parquet(tmp_path / "out.parquet")) >= 1


@pytest.mark.integration
def test_promoted_models_are_served_from_the_source_tree_without_a_build(
    promoted_home: Path, production_models: dict[str, str]
) -> None:
    env = without_manifest(promoted_home)
    target = "bentos.service:MarketModels"
    with served(target, env={**env, "MLOPS_PRODUCTION_FILE": ""}) as url, bentoml.SyncHTTPClient(url) as client:
        cards = client.models()
    assert {f"{c['name']}:{c['version']}" for c in cards} == set(production_models.values())


@pytest.mark.integration
def test_a_checkout_under_a_hidden_folder_builds(tmp_path: Path, production_models: dict[str, str]) -> None:
    """BentoML refuses build contexts in hidden folders: the build copies the context to a temporary folder."""
    checkout = build_context(tmp_path / "visible" / "context")
    hidden = tmp_path / ".local" / "src" / "mlops"
    hidden.parent.mkdir(parents=True)
    shutil.move(checkout, hidden)
    tag = build(production_models, hidden)
    shipped = Path(bentoml.get(tag).path) / "src" / "bentos" / "production.json"
    assert json.loads(shipped.read_text())["models"] == production_models
    assert not (hidden / "bentos" / "production.json").exists()  # the checkout is left as it was


def test_a_build_in_a_hidden_temporary_folder_fails_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, production_models: dict[str, str]
) -> None:
    hidden_tmp = tmp_path / ".cache" / "tmp"
    hidden_tmp.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(hidden_tmp))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(BentoBuildError, match=r"hidden folders.*TMPDIR"):
        build(production_models)
    assert os.environ["TMPDIR"] == str(hidden_tmp)
