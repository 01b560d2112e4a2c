from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.snapshots import SnapshotStore
from data.sources import EmbeddedSource


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own project home, so nothing touches the checkout's data."""
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.delenv("MLOPS_SNAPSHOT_DIR", raising=False)
    return home


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "snapshots")


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
