"""A reproducible synthetic universe of daily bars, for scale tests and benchmarks only.

Never for quality figures: its snapshots say ``synthetic`` (source, manifest, ``SnapshotInfo.synthetic``), and so do
the cards and reports of models trained on them. The dynamics are the stylised facts of daily equity returns, so that
the features, the models and their costs behave as on real data:

- a market factor and each symbol's own noise follow GARCH(1,1) variances (volatility clustering) driven by
  Student-t innovations (fat tails), and each symbol loads on the market with its own beta (cross-sectional
  correlation);
- volume co-moves with the symbol's volatility (and carries lognormal noise);
- the open gaps from the previous close, and the high and low lie beyond the open and the close by half-normal
  ranges that scale with the day's volatility, so every bar passes the OHLCV contract.

Days are the XNYS sessions (``features/calendar.py``) ending on the last session of 2024. The same parameters give
the same bars, byte for byte, so the same snapshot id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from features.calendar import trading_calendar
from features.ohlcv import SYMBOL_COLUMN

GENERATOR_VERSION = 1
SESSIONS_PER_YEAR = 252
LAST_DAY = np.datetime64("2024-12-31", "D")
#: GARCH(1,1) parameters (daily returns): the market's and the symbols' own; persistence alpha + beta < 1.
MARKET = {"omega": 1.5e-6, "alpha": 0.09, "beta": 0.89}
IDIOSYNCRATIC = {"omega": 4e-6, "alpha": 0.06, "beta": 0.92}
DEGREES_OF_FREEDOM = 5.0  # Student-t innovations, scaled to unit variance


def _t_innovations(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    draws = rng.standard_t(DEGREES_OF_FREEDOM, size=shape)
    return draws / np.sqrt(DEGREES_OF_FREEDOM / (DEGREES_OF_FREEDOM - 2.0))


def _garch(innovations: np.ndarray, omega: float, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Returns and conditional volatilities of GARCH(1,1) paths (time on axis 0, one column per path)."""
    variance = np.full(innovations.shape[1:], omega / (1.0 - alpha - beta))
    returns = np.empty_like(innovations)
    volatility = np.empty_like(innovations)
    for t in range(innovations.shape[0]):
        volatility[t] = np.sqrt(variance)
        returns[t] = volatility[t] * innovations[t]
        variance = omega + alpha * returns[t] ** 2 + beta * variance
    return returns, volatility


@dataclass(frozen=True)
class SyntheticSource:
    """``symbols`` symbols (SYN0001...) of ``years`` years of daily bars, from ``seed``."""

    symbols: int = 200
    years: float = 15.0
    seed: int = 0
    name: str = "synthetic"

    def __post_init__(self) -> None:
        if self.symbols < 1:
            raise ValueError(f"a synthetic universe needs at least one symbol, not {self.symbols}")
        if self.years <= 0:
            raise ValueError(f"a synthetic universe needs a positive number of years, not {self.years}")

    @property
    def tickers(self) -> list[str]:
        return [f"SYN{i:04d}" for i in range(1, self.symbols + 1)]

    def sessions(self) -> np.ndarray:
        calendar = trading_calendar("XNYS")
        count = round(self.years * SESSIONS_PER_YEAR)
        last = np.busday_offset(min(LAST_DAY, calendar.last), 0, roll="backward", busdaycal=calendar.busdaycalendar)
        return np.busday_offset(last, np.arange(1 - count, 1), busdaycal=calendar.busdaycalendar)

    def fetch(self, on_symbol: Callable[[str], None] | None = None) -> pd.DataFrame:
        rng = np.random.default_rng(self.seed)
        days = self.sessions()
        n_days, n = len(days), self.symbols
        market, market_volatility = _garch(_t_innovations(rng, (n_days, 1)), **MARKET)
        own, own_volatility = _garch(_t_innovations(rng, (n_days, n)), **IDIOSYNCRATIC)
        betas = rng.uniform(0.5, 1.5, n)
        drift = rng.normal(2e-4, 1e-4, n)
        returns = drift + betas * market + own
        volatility = np.sqrt((betas * market_volatility) ** 2 + own_volatility**2)
        close = rng.uniform(10.0, 300.0, n) * np.exp(np.cumsum(returns, axis=0))
        previous = np.vstack([close[:1] * np.exp(-returns[:1]), close[:-1]])
        open_ = previous * np.exp(0.3 * volatility * rng.standard_normal((n_days, n)))
        high = np.maximum(open_, close) * np.exp(0.5 * volatility * np.abs(rng.standard_normal((n_days, n))))
        low = np.minimum(open_, close) * np.exp(-0.5 * volatility * np.abs(rng.standard_normal((n_days, n))))
        base_volume = rng.lognormal(13.0, 1.0, n)
        relative = volatility / np.median(volatility, axis=0)
        volume = np.round(base_volume * relative * rng.lognormal(0.0, 0.3, (n_days, n)))
        frame = pd.DataFrame(
            {
                SYMBOL_COLUMN: np.repeat(np.array(self.tickers, dtype=object), n_days),
                "date": pd.to_datetime(np.tile(days, n)),
                "open": open_.T.ravel(),
                "high": high.T.ravel(),
                "low": low.T.ravel(),
                "close": close.T.ravel(),
                "volume": volume.T.ravel(),
            }
        )
        if on_symbol is not None:
            for ticker in self.tickers:
                on_symbol(ticker)
        return frame

    def describe(self) -> dict[str, Any]:
        return {
            "synthetic": True,
            "symbols": self.symbols,
            "years": self.years,
            "seed": self.seed,
            "generator_version": GENERATOR_VERSION,
            "note": "for scale tests and benchmarks only, never for quality figures",
        }
