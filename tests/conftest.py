from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# One BentoML model store for the whole session, never the user's: BentoML resolves BENTOML_HOME once,
# on first use, so it is set before anything imports bentoml. Tests that need isolation use their own
# registry root or model versions.
SESSION_BENTOML_HOME = os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="mlops-test-bentoml-")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
# the answers services record in the tests (bentos/recording.py) go here, not under the checkout
os.environ.setdefault("MLOPS_MONITOR_LOG_PATH", tempfile.mkdtemp(prefix="mlops-test-monitor-"))

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from data.pull import pull
from data.snapshots import SnapshotInfo, SnapshotStore
from data.sources import EmbeddedSource
from training.config import TrainingConfig
from training.dataset import Panel, build_panel
from training.run import ModelResult, TrainingRun, train


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's model store (models, Bentos: tens of MB a run) unless asked to keep it."""
    if os.environ.get("MLOPS_KEEP_TEST_STORE") != "1":
        shutil.rmtree(SESSION_BENTOML_HOME, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own project home, so nothing touches the checkout's data."""
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.delenv("MLOPS_SNAPSHOT_DIR", raising=False)
    return home


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect API (SQLite) for the whole session: its start costs ~15 s. Yields its URL, for a
    process of its own (``prefect flow-run execute``) to reach it."""
    import training.flows.retrain  # noqa: F401, I001 - Prefect's quiet, offline defaults, set before Prefect is imported
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots")


@pytest.fixture(scope="session")
def embedded_snapshot(tmp_path_factory: pytest.TempPathFactory) -> tuple[SnapshotStore, SnapshotInfo]:
    """The embedded data pulled into a session-wide snapshot store."""
    store = SnapshotStore(tmp_path_factory.mktemp("session-snapshots"))
    info, _ = pull(EmbeddedSource(), store)
    return store, info


@pytest.fixture(scope="session")
def quick_panel(embedded_snapshot: tuple[SnapshotStore, SnapshotInfo]) -> Panel:
    """The pooled panel of the embedded data as the quick training mode uses it (rows from 2010)."""
    store, info = embedded_snapshot
    config = TrainingConfig.quick()
    return build_panel(store.load(info.id), info, config.horizon, config.first_date)


TABULAR = ("return_lightgbm", "return_random_forest", "direction_lightgbm", "volatility_lightgbm")


@pytest.fixture(scope="session")
def quick_run(
    embedded_snapshot: tuple[SnapshotStore, SnapshotInfo], tmp_path_factory: pytest.TempPathFactory
) -> TrainingRun:
    """One quick-mode training run of all six models on the embedded data, with its report.

    Its models go to the session's BentoML store; the tests of training, registry and service share them.
    """
    store, info = embedded_snapshot
    return train(info.id, config=TrainingConfig.quick(), store=store, reports_root=tmp_path_factory.mktemp("reports"))


@pytest.fixture(scope="session")
def tabular_results(quick_run: TrainingRun) -> dict[str, ModelResult]:
    """The four tabular models of the quick run."""
    return {r.name: r for r in quick_run.results if r.name in TABULAR}


@pytest.fixture(scope="session")
def embedded_bars() -> pd.DataFrame:
    """The real S&P 500 and NASDAQ bars bundled with arch, as the embedded source delivers them."""
    return EmbeddedSource().fetch()


def make_bars(
    n: int,
    seed: int = 0,
    start: str = "2020-01-02",
    volatility: float = 0.01,
    flat_fraction: float = 0.0,
    zero_volume_fraction: float = 0.0,
) -> pd.DataFrame:
    """A valid single-symbol frame of ``n`` synthetic daily bars (business days, random walk prices)."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0, volatility, n)
    gaps = rng.normal(0.0, volatility / 4, n)
    flat = rng.random(n) < flat_fraction
    returns[flat] = 0.0
    gaps[flat] = 0.0
    close = 100.0 * np.exp(np.cumsum(returns))
    previous = np.concatenate(([100.0], close[:-1]))
    open_ = previous * np.exp(gaps)
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = np.where(flat, top, top * np.exp(np.abs(rng.normal(0, volatility / 2, n))))
    low = np.where(flat, bottom, bottom * np.exp(-np.abs(rng.normal(0, volatility / 2, n))))
    volume = np.round(rng.lognormal(14, 0.4, n))
    volume[rng.random(n) < zero_volume_fraction] = 0.0
    return pd.DataFrame(
        {
            "date": pd.bdate_range(start, periods=n),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


def as_panel(*frames: tuple[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([f.assign(symbol=s)[["symbol", *f.columns]] for s, f in frames], ignore_index=True)


@pytest.fixture(scope="session")
def production_models(quick_run: TrainingRun, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The quick run's six models promoted in a session registry and named in a production manifest.

    Sets MLOPS_PRODUCTION_FILE for the rest of the session so the service module serves them.
    """
    from bentos.production import write_manifest
    from training.registry.promotion import Registry

    assert quick_run.ok, quick_run.failures
    root = tmp_path_factory.mktemp("production")
    registry = Registry(root / "registry")
    registry.promote([r.tag for r in quick_run.results], reason="test session")
    tags = registry.production()
    manifest = root / "production.json"
    write_manifest(manifest, tags)
    os.environ["MLOPS_PRODUCTION_FILE"] = str(manifest)
    return tags


@pytest.fixture(scope="session")
def dask_client() -> Iterator[Client]:
    """A real local Dask cluster of two single-threaded worker processes for the session (cluster/)."""
    from cluster import ClusterSettings, connect

    with connect(ClusterSettings(workers=2)) as client:
        yield client


def perturbed(bars: pd.DataFrame, symbol: str, start: str, seed: int) -> pd.DataFrame:
    """Another symbol made from real bars: every bar's prices times a slow random walk factor (so the OHLC
    relations hold), its own volume, and a history starting at ``start``."""
    rng = np.random.default_rng(seed)
    frame = bars[bars["date"] >= pd.Timestamp(start)].reset_index(drop=True).copy()
    factor = np.exp(np.cumsum(rng.normal(0.0, 0.004, len(frame))))
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column] * factor
    frame["volume"] = np.round(frame["volume"] * rng.uniform(0.5, 1.5, len(frame))).astype("int64")
    frame["symbol"] = symbol
    return frame


@pytest.fixture(scope="session")
def small_universe(
    embedded_bars: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> tuple[SnapshotStore, SnapshotInfo]:
    """Four symbols in a snapshot: the two embedded indices and a perturbed copy of each, one with a shorter
    history (from 2004)."""
    store = SnapshotStore(tmp_path_factory.mktemp("universe-snapshots"))
    spx, ndx = (embedded_bars[embedded_bars["symbol"] == s] for s in sorted(embedded_bars["symbol"].unique()))
    universe = pd.concat(
        [embedded_bars, perturbed(spx, "SPX_P", "1999-01-01", 1), perturbed(ndx, "NDX_P", "2004-01-01", 2)],
        ignore_index=True,
    )
    info, _ = store.write(universe, source="test-universe")
    return store, info
