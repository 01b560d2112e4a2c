"""The synthetic universe (data/synthetic.py): reproducible, within the OHLCV contract, with the stylised facts of
daily equity returns, and labelled synthetic wherever it goes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from data.pull import pull
from data.snapshots import SnapshotStore
from data.synthetic import SyntheticSource
from features import validate_ohlcv


@pytest.fixture(scope="module")
def universe() -> pd.DataFrame:
    return SyntheticSource(symbols=40, years=8, seed=7).fetch()


def returns_by_symbol(frame: pd.DataFrame) -> pd.DataFrame:
    return np.log(frame.pivot(index="date", columns="symbol", values="close")).diff().iloc[1:]


def lag1(x: np.ndarray) -> float:
    return float(np.corrcoef(x[1:], x[:-1])[0, 1])


def test_same_seed_same_bars_other_seed_other_bars(universe: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(universe, SyntheticSource(symbols=40, years=8, seed=7).fetch())
    assert not SyntheticSource(symbols=40, years=8, seed=8).fetch()["close"].equals(universe["close"])


def test_shape_names_and_trading_days(universe: pd.DataFrame) -> None:
    assert sorted(universe["symbol"].unique()) == [f"SYN{i:04d}" for i in range(1, 41)]
    days = universe.loc[universe["symbol"] == "SYN0001", "date"]
    assert len(days) == 8 * 252
    assert days.iloc[-1] == pd.Timestamp("2024-12-31")
    assert pd.Timestamp("2024-12-25") not in set(days)  # Christmas: XNYS closed
    assert set(days.dt.day_of_week) <= {0, 1, 2, 3, 4}


def test_every_symbol_passes_the_ohlcv_contract(universe: pd.DataFrame) -> None:
    for _, bars in universe.groupby("symbol"):
        validate_ohlcv(bars.drop(columns="symbol").reset_index(drop=True))


def test_stylised_facts(universe: pd.DataFrame) -> None:
    returns = returns_by_symbol(universe)
    columns = returns.columns
    assert abs(np.mean([lag1(returns[c].to_numpy()) for c in columns])) < 0.05  # returns: hardly autocorrelated
    assert np.mean([lag1(returns[c].to_numpy() ** 2) for c in columns]) > 0.05  # volatility clusters
    excess_kurtosis = ((returns - returns.mean()) ** 4).mean() / returns.var() ** 2 - 3
    assert excess_kurtosis.median() > 1.0  # fat tails
    correlations = np.corrcoef(returns.to_numpy().T)[np.triu_indices(len(columns), 1)]
    assert correlations.mean() > 0.1  # a market factor
    volume = np.log(universe.pivot(index="date", columns="symbol", values="volume")).iloc[1:]
    assert np.mean([np.corrcoef(returns[c].abs(), volume[c])[0, 1] for c in columns]) > 0.05


def test_bad_parameters_are_named() -> None:
    with pytest.raises(ValueError, match="at least one symbol"):
        SyntheticSource(symbols=0)
    with pytest.raises(ValueError, match="positive number of years"):
        SyntheticSource(years=0)


def test_snapshot_says_synthetic_and_is_content_addressed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = SnapshotStore(tmp_path / "snapshots")
    info, created = pull(SyntheticSource(symbols=3, years=2, seed=1), store)
    again, created_again = pull(SyntheticSource(symbols=3, years=2, seed=1), store)
    assert created and not created_again and again.id == info.id
    assert info.source == "synthetic" and info.synthetic
    assert info.origin["seed"] == 1 and info.origin["generator_version"] == 1
    assert store.info(info.id).synthetic


def test_cli_pulls_a_synthetic_universe() -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["data", "pull", "--source", "synthetic", "--symbols", "12", "--years", "1"])
    assert result.exit_code == 0, result.output
    assert "12 symbols" in result.output and "synthetic bars" in result.output
    bad = CliRunner().invoke(app, ["data", "pull", "--source", "synthetic", "--symbols", "0"])
    assert bad.exit_code != 0 and "at least one symbol" in bad.output
