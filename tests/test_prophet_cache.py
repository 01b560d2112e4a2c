"""A stored price model of many symbols is read lazily (bentos/prophet_model.py): nothing but the manifest at
load, one read per symbol however many forecasts ask at once, a bounded least-recently-used cache, identical
forecasts after an eviction, and a damaged file named by its symbol."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from bentos.prophet_intervals import ConformalInterval
from bentos.prophet_model import (
    CACHE_ENV,
    ModelFileError,
    ProphetModels,
    SymbolEntry,
    UnknownSymbolError,
    anchor_from_recent,
    cache_bound,
)
from data.synthetic import SyntheticSource
from training.config import TrainingConfig
from training.models.price_prophet import PriceProphet

SYMBOLS = [f"S{i}" for i in range(6)]


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six symbols' real Prophet models: two fits on synthetic bars, each stored under three symbols (the load
    and cache properties tested here do not depend on which fit a file holds)."""
    universe = SyntheticSource(symbols=2, years=2, seed=3).fetch()
    trainer = PriceProphet(TrainingConfig.quick())
    fits, entries = {}, {}
    for i, (_, bars) in enumerate(universe.groupby("symbol")):
        bars = bars.reset_index(drop=True)
        fits[i] = trainer.fit_symbol(bars)
        anchor = anchor_from_recent(bars["date"], bars["close"], bars["volume"])
        entries[i] = SymbolEntry(
            last_date=str(anchor.date.date()),
            last_close=anchor.close,
            last_log_volume=anchor.log_volume,
            train_start=str(bars["date"].iloc[0].date()),
            train_end=str(bars["date"].iloc[-1].date()),
            n_train=len(bars),
            last_variance=anchor.variance,
        )
    directory = tmp_path_factory.mktemp("price")
    ProphetModels(
        {s: fits[i % 2] for i, s in enumerate(SYMBOLS)},
        {s: entries[i % 2] for i, s in enumerate(SYMBOLS)},
        ConformalInterval(0.8, -1.3, 1.2, 100),
    ).save(directory)
    return directory


def test_load_reads_only_the_manifest(stored: Path) -> None:
    models = ProphetModels.load(stored, cache_size=2)
    assert models.symbols == sorted(SYMBOLS)
    assert models.loads == 0 and not models.models
    assert models.anchor("S3").close > 0  # the anchor comes from the manifest
    assert models.loads == 0


def test_one_read_per_symbol_however_many_ask_at_once(stored: Path) -> None:
    models = ProphetModels.load(stored, cache_size=2)
    results: list[pd.DataFrame] = []
    threads = [threading.Thread(target=lambda: results.append(models.forecast("S1", 5))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert models.loads == 1 and len(results) == 8
    for result in results[1:]:
        pd.testing.assert_frame_equal(result, results[0])
    models.forecast("S1", 5)
    assert models.loads == 1


def test_the_cache_is_bounded_and_an_evicted_symbol_forecasts_the_same(stored: Path) -> None:
    models = ProphetModels.load(stored, cache_size=2)
    first = models.forecast("S0", 10)
    for symbol in ("S1", "S2", "S3"):
        models.forecast(symbol, 3)
        assert len(models.models) <= 2
    assert "S0" not in models.models and models.loads == 4
    pd.testing.assert_frame_equal(models.forecast("S0", 10), first)
    assert models.loads == 5
    models.forecast("S3", 3)  # still cached (recently used)
    assert models.loads == 5


def test_unknown_symbol_and_damaged_file_are_named(stored: Path, tmp_path: Path) -> None:
    models = ProphetModels.load(stored, cache_size=2)
    with pytest.raises(UnknownSymbolError, match="NOPE"):
        models.forecast("NOPE", 3)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in stored.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    victim = ProphetModels.load(damaged).files["S4"]
    victim.write_text("{ not json")
    broken = ProphetModels.load(damaged)
    with pytest.raises(ModelFileError, match="S4"):
        broken.forecast("S4", 3)
    assert broken.forecast("S5", 3) is not None  # the others still answer


def test_the_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, "7")
    assert cache_bound() == 7
    monkeypatch.setenv(CACHE_ENV, "0")
    with pytest.raises(ValueError, match="at least 1"):
        cache_bound()
    monkeypatch.setenv(CACHE_ENV, "many")
    with pytest.raises(ValueError, match="whole number"):
        cache_bound()
