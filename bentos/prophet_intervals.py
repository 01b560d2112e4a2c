"""``price_prophet``'s intervals: split-conformal on the walk-forward errors, scaled by the anchor's volatility.

Prophet's own intervals (trend and noise uncertainty simulated from the fit) were miscalibrated both ways: their
80 % interval held 92 % of realised closes on the embedded indices and 56 % when the history was short (fits from
2012; the issue measured 98 % on a long stock history and 55 % on a short one). Here every forecast's interval is
instead calibrated on how wrong the walk-forward forecasts were, in units of the market's volatility when they were
made. A forecast made at the anchor with EWMA daily volatility ``σ`` (RiskMetrics, λ = 0.94) has the score

    z = log(actual / forecast) / (σ · sqrt(h))     at horizon h (trading days)

and the interval of level ``L`` is ``forecast · exp(z_lo · σ · sqrt(h))`` to ``forecast · exp(z_hi · σ · sqrt(h))``,
``z_lo`` and ``z_hi`` the ``(1 - L) / 2`` and ``(1 + L) / 2`` conformal quantiles of the scores (one pair for all
horizons: the sqrt(h) scaling makes them alike, and the pooled quantiles measured closer to the nominal level than
one pair per horizon, which has a few hundred scores at most). The volatility scaling makes the interval wide in a
turbulent market and narrow in a calm one, and lets one calibration serve every symbol.

Measured (``benchmarks/results/short_history.md``): the 80 % interval held about 80 % on the indices and 77 %
on the short histories, each test year calibrated on the years before it only.

The anchor's volatility: the variance recursion run over the symbol's returns up to the anchor. A forecast anchored
on recent bars continues the recursion from the last training bar's variance through the recent returns after it
(from the training's last close), or, given more than ``WARMUP`` recent returns, runs over them alone.

numpy and the feature contract's EWMA (``features/ewma.py``) only: the service imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from features.ewma import EWMA_LAMBDA, WARMUP, close_variance, ewma_variance

__all__ = ["EWMA_LAMBDA", "WARMUP", "ConformalInterval", "close_variance", "continued_variance", "ewma_variance"]

LEVEL = 0.8
METHOD = "split-conformal on walk-forward log errors, scaled by EWMA(0.94) daily volatility x sqrt(horizon)"
#: Fewest scores an interval is calibrated on.
MIN_SCORES = 50


def continued_variance(variance: float, last_close: float, closes: np.ndarray) -> float:
    """``variance`` (at the bar of ``last_close``) carried through the returns of the later ``closes``."""
    log_close = np.log(np.concatenate(([last_close], np.asarray(closes, dtype=float))))
    for r in np.diff(log_close):
        variance = EWMA_LAMBDA * variance + (1.0 - EWMA_LAMBDA) * float(r) ** 2
    return variance


def scores(actual: np.ndarray, forecast: np.ndarray, volatility: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """Each forecast's error in volatility units: ``log(actual / forecast) / (σ sqrt(h))``."""
    return np.asarray(np.log(actual / forecast) / (volatility * np.sqrt(horizon)))


@dataclass(frozen=True)
class ConformalInterval:
    """The two score quantiles of a calibrated interval, and how many scores they come from."""

    level: float
    z_lower: float
    z_upper: float
    scores: int

    @classmethod
    def calibrate(cls, values: np.ndarray, level: float = LEVEL) -> ConformalInterval:
        """The conformal quantiles of the finite ``values``: ranks ``floor((n + 1) a)`` and ``ceil((n + 1) (1 - a))``
        of the sorted scores, ``a = (1 - level) / 2`` (so that a new exchangeable score falls outside each side
        with probability at most ``a``)."""
        z = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
        n = z.size
        if n < MIN_SCORES:
            raise ValueError(f"{n} walk-forward forecasts to calibrate the intervals on, fewer than {MIN_SCORES}")
        tail = (1.0 - level) / 2.0
        low = max(math.floor((n + 1) * tail + 1e-9), 1)  # 1e-9: (n + 1) * 0.9 is not 90.000...01 for n = 99
        high = min(math.ceil((n + 1) * (1.0 - tail) - 1e-9), n)
        return cls(level, float(z[low - 1]), float(z[high - 1]), int(n))

    def bounds(
        self, price: np.ndarray, volatility: float | np.ndarray, horizon: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of forecasts ``price`` at ``horizon`` (0: the anchor itself, no width)."""
        scale = np.asarray(volatility, dtype=float) * np.sqrt(np.asarray(horizon, dtype=float))
        price = np.asarray(price, dtype=float)
        lower = np.minimum(price * np.exp(self.z_lower * scale), price)
        upper = np.maximum(price * np.exp(self.z_upper * scale), price)
        return lower, upper

    def card(self) -> dict[str, Any]:
        return {"method": METHOD, **asdict(self)}

    @classmethod
    def from_card(cls, values: Mapping[str, Any]) -> ConformalInterval:
        try:
            if values["method"] != METHOD:
                raise ValueError(f"intervals by {values['method']!r}, which this code does not apply")
            level, low, high = float(values["level"]), float(values["z_lower"]), float(values["z_upper"])
            return cls(level, low, high, int(values["scores"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"no usable interval calibration: {error!r}") from None
