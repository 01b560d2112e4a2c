"""Signal quality in the terms quants use: information coefficient, quantile returns, calibration of P(up).

Definitions follow Qlib's signal analysis (``SigAnaRecord``) and alphalens:

* **IC** of a period: the Pearson correlation of the predictions and the realised targets of that period; **rank IC**
  the same with Spearman's (Pearson of the ranks). Over the periods: the mean, the standard deviation, **ICIR** =
  mean / std, and the t-statistic of the mean with a HAC standard error, since the targets overlap (a 5-day return
  starts every day) and neighbouring periods' ICs are correlated: Hansen and Hodrick's (uniform kernel, ``h − 1``
  lags) for overlapping ``h``-day targets, whose autocorrelation is known to end at lag ``h − 1`` (Newey and West's
  Bartlett kernel at that many lags down-weights it: its 95 % interval covered the mean of overlapping 5-day sums in
  about 89 % of simulations against Hansen-Hodrick's 94-96 %, ``tests/test_signal.py``); Newey-West's with their
  rule's lags for one-day targets. The 95 % interval is mean ± 1.96 HAC standard errors; an interval that covers zero
  is **no evidence of skill**, whatever the mean.
* The **period** depends on the data. With at least ``MIN_CROSS_SECTION`` symbols on a typical date the IC is
  cross-sectional, one per date (the usual meaning in a universe: does the model rank the symbols), and its mean,
  std, ICIR and HAC interval are those of the daily series. With fewer (one index, the two embedded ones), a
  cross-section says nothing and the IC is time-series (does the model rank the days): the correlation over each
  symbol's whole test period, averaged over the symbols, computed as the mean over dates of the product of the
  within-symbol z-scores so that its HAC interval follows (the same lags); the periods are calendar years, whose
  ICs give the std and ICIR (the stability over time; the record says so: ``mean_over`` ``"date"``, ``std_over``
  ``"year"``). Short windows such as months are not used: within a few
  weeks of overlapping 5-day returns, detrending alone correlates past-looking features with the future.
* Every symbol's own time-series IC over its whole test period gives the spread across symbols (median and worst
  decile), as the cards' ``by_symbol`` does for the primary metric.
* **Quantiles**: the predictions are bucketed into ``QUANTILES`` groups (per date across symbols for a
  cross-sectional IC; per symbol over its test period otherwise: descriptive, as the buckets' edges come from the
  whole period), with the mean realised target per bucket, the top-minus-bottom spread and the buckets' turnover at
  the horizon's rebalancing dates (the share of a bucket's members that were not in it one rebalance before).
* **Calibration** of a probability: a reliability curve with counts per bin, the Brier score and Murphy's
  decomposition (reliability − resolution + uncertainty; the rest is the spread of the forecasts inside a bin), and
  the Brier score of the base rate known before the test (the training up-rate, when given; the test period's own
  up-rate, the uncertainty term, would be a forecast made with hindsight).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import OLS

#: Symbols on the median date for an IC to be cross-sectional (per date) rather than time-series (per month).
MIN_CROSS_SECTION = 10
#: Rows a period needs for its IC (fewer: the period is left out).
MIN_PERIOD_ROWS = 10
QUANTILES = 5
CALIBRATION_BINS = 10
Z_95 = 1.959963984540054


def hac_setting(periods: int, horizon: int = 1) -> tuple[int, str]:
    """Lags and kernel of the HAC standard error: Hansen-Hodrick's (``horizon - 1`` lags, uniform kernel) when every
    period's target overlaps the next ``horizon - 1`` periods' (daily ICs of 5-day returns), else Newey and West's
    (``floor(4 (T / 100)^(2/9))`` lags, Bartlett kernel)."""
    if horizon > 1:
        return horizon - 1, "uniform"
    return int(4 * (periods / 100) ** (2 / 9)), "bartlett"


def mean_interval(values: np.ndarray, lags: int, kernel: str = "bartlett") -> dict[str, Any]:
    """The mean of a series with its HAC (``kernel``, ``lags``) standard error, t-statistic and 95 % interval; the
    standard deviation and mean / std (ICIR for a series of ICs). A uniform kernel's variance can come out negative
    in a short sample: then Bartlett's with twice the lags is used (``kernel`` says which)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    nan = float("nan")
    if x.size < 2:
        return {"mean": float(x.mean()) if x.size else nan, "std": nan, "ir": nan, "t_stat": nan, "se": nan,
                "ci_low": nan, "ci_high": nan, "periods": int(x.size), "lags": lags, "kernel": kernel}  # fmt: skip
    mean, std = float(x.mean()), float(x.std(ddof=1))
    se = 0.0  # a constant series: its mean is known exactly
    if std > 0.0:
        se = _hac_se(x, lags, kernel)
        if not se > 0 and kernel != "bartlett":
            lags, kernel = 2 * lags, "bartlett"
            se = _hac_se(x, lags, kernel)
    t_stat = mean / se if se > 0 else (math.copysign(math.inf, mean) if mean else nan)
    return {
        "mean": mean,
        "std": std,
        "ir": mean / std if std > 0 else nan,
        "t_stat": t_stat,
        "se": se,
        "ci_low": mean - Z_95 * se,
        "ci_high": mean + Z_95 * se,
        "periods": int(x.size),
        "lags": lags,
        "kernel": kernel,
    }


def _hac_se(x: np.ndarray, lags: int, kernel: str) -> float:
    with np.errstate(invalid="ignore"):
        fit = OLS(x, np.ones_like(x)).fit(cov_type="HAC", cov_kwds={"maxlags": min(lags, x.size - 1), "kernel": kernel})
        return float(fit.bse[0])


def evidence(summary: dict[str, float]) -> str:
    """``"positive"`` or ``"negative"`` when the 95 % interval excludes zero on that side, else ``"none"``."""
    if summary["ci_low"] > 0:
        return "positive"
    if summary["ci_high"] < 0:
        return "negative"
    return "none"


def grouped_correlation(keys: pd.Series | np.ndarray, x: np.ndarray, y: np.ndarray, rank: bool = False) -> pd.Series:
    """Pearson correlation of ``x`` and ``y`` within each key (Spearman's with ``rank``); NaN for a group of fewer
    than ``MIN_PERIOD_ROWS`` rows or without variation. Rows where either is NaN are left out first."""
    frame = pd.DataFrame({"key": np.asarray(keys), "x": x, "y": y}).dropna()
    groups = frame.groupby("key", sort=True)
    if rank:
        frame["x"], frame["y"] = groups["x"].rank(), groups["y"].rank()
    xd = frame["x"] - groups["x"].transform("mean")
    yd = frame["y"] - groups["y"].transform("mean")
    sums = pd.DataFrame({"xy": xd * yd, "xx": xd * xd, "yy": yd * yd, "key": frame["key"]}).groupby("key").sum()
    counts = groups.size()
    scale = np.sqrt(sums["xx"] * sums["yy"])
    correlation: pd.Series = (sums["xy"] / scale).where((scale > 0) & (counts >= MIN_PERIOD_ROWS))
    return correlation.clip(-1.0, 1.0)


def is_cross_sectional(frame: pd.DataFrame) -> bool:
    """Whether the median date of ``frame`` (columns ``date``, ``symbol``) has ``MIN_CROSS_SECTION`` symbols."""
    return bool(frame.groupby("date")["symbol"].nunique().median() >= MIN_CROSS_SECTION) if len(frame) else False


def period_ics(frame: pd.DataFrame, cross_sectional: bool) -> pd.DataFrame:
    """The IC and rank IC of every period (``pearson`` and ``rank`` columns, indexed by period): per date, or per
    symbol and calendar year averaged over the symbols. ``frame``: ``date``, ``symbol``, ``prediction``,
    ``realised``."""
    x, y = frame["prediction"].to_numpy(float), frame["realised"].to_numpy(float)
    if cross_sectional:
        keys = frame["date"].to_numpy()
        return pd.DataFrame({"pearson": grouped_correlation(keys, x, y), "rank": grouped_correlation(keys, x, y, True)})
    year = pd.to_datetime(frame["date"]).dt.year.astype(str)
    keys = (year + "|" + frame["symbol"].astype(str)).to_numpy()
    per = pd.DataFrame({"pearson": grouped_correlation(keys, x, y), "rank": grouped_correlation(keys, x, y, True)})
    per.index = per.index.str.split("|").str[0]
    return per.groupby(level=0).mean()


def standardised_products(frame: pd.DataFrame, rank: bool) -> pd.Series:
    """Per date, the mean over symbols of ``z(prediction) * z(realised)``, the z-scores (population, of the values
    or of their ranks) taken within each symbol's whole test period: the series whose mean is the symbols' average
    time-series correlation."""
    data = frame[["date", "symbol", "prediction", "realised"]].dropna()
    groups = data.groupby("symbol")
    columns = {}
    for column in ("prediction", "realised"):
        values = groups[column].rank() if rank else data[column]
        by = values.groupby(data["symbol"])
        columns[column] = (values - by.transform("mean")) / by.transform("std", ddof=0)
    products = columns["prediction"] * columns["realised"]
    usable = groups["date"].transform("size") >= MIN_PERIOD_ROWS
    return products[usable & np.isfinite(products)].groupby(data["date"]).mean()


def _summary(periods: pd.Series, products: pd.Series | None, horizon: int) -> dict[str, Any]:
    """Mean, std, IR, HAC t and interval of the period ICs (cross-sectional), or (time-series) mean, t and
    interval from the daily ``products`` with the std and IR of the yearly ICs."""
    values = periods.dropna().to_numpy()
    if products is None:
        summary = mean_interval(values, *hac_setting(values.size, horizon))
    else:
        daily = products.to_numpy()
        summary = mean_interval(daily, *hac_setting(daily.size, horizon))
        std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
        summary |= {"std": std, "ir": float(values.mean()) / std if std > 0 else float("nan"), "periods": values.size}
    return summary | {"evidence": evidence(summary)}


def information_coefficient(frame: pd.DataFrame, horizon: int) -> dict[str, Any]:
    """The card's ``ic``: Pearson and rank IC summaries with their intervals and evidence, and the spread of every
    symbol's time-series rank IC. ``frame``: ``date``, ``symbol``, ``prediction``, ``realised``."""
    cross = is_cross_sectional(frame)
    periods = period_ics(frame, cross)
    out: dict[str, Any] = {
        "kind": "cross_sectional" if cross else "time_series",
        "period": "date" if cross else "year",
        "mean_over": "date",  # the mean and its interval: per date (time series: the z-score products)
        "std_over": "date" if cross else "year",  # the std and ICIR
    }
    for column in ("pearson", "rank"):
        products = None if cross else standardised_products(frame, rank=column == "rank")
        out[column] = _summary(periods[column], products, horizon)
    x, y = frame["prediction"].to_numpy(float), frame["realised"].to_numpy(float)
    per_symbol = grouped_correlation(frame["symbol"].astype(str).to_numpy(), x, y, rank=True).dropna()
    out["by_symbol"] = {
        "symbols": int(per_symbol.size),
        "median": float(per_symbol.median()) if per_symbol.size else float("nan"),
        "worst_decile": float(per_symbol.quantile(0.1)) if per_symbol.size else float("nan"),
        "positive_share": float((per_symbol > 0).mean()) if per_symbol.size else float("nan"),
    }
    return out


def buckets(frame: pd.DataFrame, cross_sectional: bool, quantiles: int = QUANTILES) -> np.ndarray:
    """Each row's prediction quantile, 1 (lowest) to ``quantiles``: within its date, or within its symbol."""
    key = "date" if cross_sectional else "symbol"
    pct = frame.groupby(key)["prediction"].rank(method="average", pct=True)
    return np.ceil(pct.to_numpy() * quantiles).clip(1, quantiles).astype(int)


def rebalance_dates(dates: pd.Series | np.ndarray, horizon: int) -> np.ndarray:
    """Every ``horizon``-th distinct date, from the first: the days a strategy held for the horizon trades."""
    return np.unique(np.asarray(dates))[:: max(horizon, 1)]


def quantile_analysis(frame: pd.DataFrame, horizon: int, quantiles: int = QUANTILES) -> dict[str, Any]:
    """Mean realised target per prediction quantile (per date, then over dates, for a cross-section), the
    top-minus-bottom spread and the top and bottom buckets' turnover at the rebalancing dates."""
    frame = frame.dropna(subset=["prediction", "realised"])
    cross = is_cross_sectional(frame)
    frame = frame.assign(bucket=buckets(frame, cross, quantiles))
    if cross:
        means = frame.groupby(["date", "bucket"])["realised"].mean().unstack().mean()
    else:
        means = frame.groupby("bucket")["realised"].mean()
    means = means.reindex(range(1, quantiles + 1))
    trades = frame[frame["date"].isin(rebalance_dates(frame["date"], horizon))]
    return {
        "quantiles": quantiles,
        "mean_realised": [float(v) for v in means.to_numpy()],
        "spread": float(means.iloc[-1] - means.iloc[0]),
        "turnover_top": bucket_turnover(trades, quantiles, cross),
        "turnover_bottom": bucket_turnover(trades, 1, cross),
    }


def bucket_turnover(trades: pd.DataFrame, bucket: int, cross_sectional: bool) -> float:
    """Mean share of a bucket's members at a rebalance that were not in it at the previous one (alphalens's
    quantile turnover); for a time series, the share of rebalances where a symbol enters the bucket among those
    where it is in it."""
    members = trades.assign(inside=trades["bucket"] == bucket).pivot_table(
        index="date", columns="symbol", values="inside", aggfunc="first"
    )
    inside = members.fillna(False).to_numpy(bool)
    if inside.shape[0] < 2:
        return float("nan")
    new = inside[1:] & ~inside[:-1]
    if cross_sectional:
        counts = inside[1:].sum(axis=1)
        shares = new.sum(axis=1)[counts > 0] / counts[counts > 0]
        return float(shares.mean()) if shares.size else float("nan")
    held = inside[1:].sum()
    return float(new.sum() / held) if held else float("nan")


def calibration(
    probability: np.ndarray,
    outcome: np.ndarray,
    base_probability: np.ndarray | None = None,
    bins: int = CALIBRATION_BINS,
) -> dict[str, Any]:
    """Reliability curve (equal-width bins of P(up), with counts), Brier score, Murphy's decomposition, and the Brier
    score of the base rate known before each forecast (``base_probability``, the training up-rate per row; the test
    period's own up-rate without it). Rows where a value is NaN are left out."""
    base_p = np.full(probability.shape, np.nan) if base_probability is None else np.asarray(base_probability, float)
    keep = np.isfinite(probability) & np.isfinite(outcome) & (np.isfinite(base_p) | (base_probability is None))
    p, y = probability[keep].astype(float), outcome[keep].astype(float)
    n = p.size
    index = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(index, minlength=bins)
    mean_p = np.bincount(index, weights=p, minlength=bins) / np.maximum(counts, 1)
    rate = np.bincount(index, weights=y, minlength=bins) / np.maximum(counts, 1)
    base = float(y.mean()) if n else float("nan")
    filled = counts > 0
    reliability = float(np.sum(counts[filled] * (mean_p[filled] - rate[filled]) ** 2) / n) if n else float("nan")
    resolution = float(np.sum(counts[filled] * (rate[filled] - base) ** 2) / n) if n else float("nan")
    curve = [  # an empty bin has no mean and no rate (not NaN: the card compares equal after a round trip)
        {"low": i / bins, "high": (i + 1) / bins, "count": int(counts[i])}
        | ({"mean_probability": float(mean_p[i]), "observed_rate": float(rate[i])} if counts[i] else {})
        for i in range(bins)
    ]
    brier = float(np.mean((p - y) ** 2)) if n else float("nan")
    uncertainty = base * (1 - base)
    # without the rates known beforehand, the constant forecast of the base rate scores exactly the uncertainty
    base_brier = uncertainty if base_probability is None else float(np.mean((base_p[keep] - y) ** 2))
    return {
        "rows": int(n),
        "bins": curve,
        "brier": brier,
        "reliability": reliability,
        "resolution": resolution,
        "uncertainty": uncertainty,
        "base_rate": base,
        "base_rate_source": "test" if base_probability is None else "training",
        "brier_base_rate": base_brier,
        "brier_skill": 1 - brier / base_brier if base_brier > 0 else float("nan"),
    }
