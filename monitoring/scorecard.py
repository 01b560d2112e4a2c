"""The live scorecard: how each served model version does on the realised rows, beside its baseline, against the
range its walk-forward folds showed.

For every (model, version) with realised rows (``monitoring/outcomes.py``), the metrics of its walk-forward card
(``training/evaluation/metrics.py``, the same functions) over every realised row since it was first served, and over
a rolling window of the last ``window_days`` as-of dates, and the same metrics of its naive baselines on the same
rows:

* return models: the zero forecast and the historical mean (the mean realised target over the model's training
  period, on the served symbols' stored bars: known when the model was promoted);
* direction: the majority class, a constant P(up) at the training period's up-rate (AUC 0.5 by definition);
* volatility: RiskMetrics' EWMA of the stored closes to the as-of bar (GARCH and HAR need refits: card only);
* price: the random walk, the forecast's anchor close; forecasts beyond the card's horizon are not scored (the
  walk-forward scored 1 to ``horizon`` days);
* regime: no target; the check is that the realised volatility of the days each regime was served on rises from
  calm to turbulent, as the walk-forward's out-of-sample years did.

The signal metrics of the card's ``quant`` record (``training/evaluation/signal.py``) where the task has them: the
IC and rank IC of the served predictions against what they forecast (return and direction: the forward log return at
the card's horizon; volatility: the realised volatility), their ICIR and HAC interval, computed by the same function
over the realised rows, beside the walk-forward's; for volatility also the EWMA baseline's IC.

The walk-forward band is the lowest and highest fold value of the card's primary metric (one fold a test year).
A rolling window shorter than a year is noisier than a fold, so "below the band" is a signal to look, which the
monitor's alert rules require to persist before they act.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import model_kind
from features.ewma import close_variance
from features.targets import forward_log_return, next_day_direction
from monitoring.outcomes import REALISED, SeriesFinder
from training.evaluation.metrics import (
    classification_metrics,
    finite_value,
    mape,
    regression_metrics,
    volatility_metrics,
)
from training.evaluation.signal import information_coefficient
from training.registry.card import ModelCard

#: As-of dates in the rolling window (half a year of sessions).
WINDOW_DAYS = 126
#: Realised rows a metric needs: fewer, and the window has no value.
MIN_ROWS = 20
#: Days a regime must have been served on for its realised volatility to be compared (as the walk-forward's).
MIN_REGIME_DAYS = 21
TRADING_DAYS = 252


@dataclass
class Score:
    """One served model version's live figures."""

    model: str
    version: str
    metric: str
    higher_is_better: bool
    rows: int
    first: str
    last: str
    live: dict[str, float] = field(default_factory=dict)  # since first served
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    band: tuple[float, float] | None = None  # the walk-forward folds' lowest and highest
    rolling: pd.DataFrame | None = None  # as_of, rows, model, <baseline>...: the window's primary metric
    below_band_since: str | None = None
    worse_than_baseline_days: int = 0  # latest consecutive as-of dates the window's model trails its best baseline
    statement: str = ""
    regimes: dict[str, Any] | None = None
    signal: dict[str, Any] | None = None  # live IC beside the walk-forward's (see the module's docstring)
    repeats: int = 0  # answers left out as repeats of an earlier one for the same symbol, date and horizon

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "rolling"}
        out["rolling"] = [] if self.rolling is None else self.rolling.to_dict("records")
        return out


def band(card: ModelCard) -> tuple[float, float] | None:
    """The lowest and highest fold value of the card's primary metric."""
    values = [finite_value(f.get("metrics", {}).get(card.primary_metric)) for f in card.walk_forward["per_fold"]]
    kept = [v for v in values if v is not None]
    return (min(kept), max(kept)) if kept else None


def scorecard(
    frame: pd.DataFrame,
    cards: Mapping[tuple[str, str], ModelCard],
    finder: SeriesFinder,
    window_days: int = WINDOW_DAYS,
) -> list[Score]:
    """A :class:`Score` per (model, version) of ``frame`` (recorded rows with their outcomes) that has a card."""
    scores = []
    done = frame[frame["status"] == REALISED] if len(frame) else frame
    for (model, version), card in sorted(cards.items()):
        rows = done[(done["model"] == model) & (done["version"] == version)] if len(done) else done
        scores.append(score_version(rows, card, finder, window_days, version))
    return scores


def score_version(rows: pd.DataFrame, card: ModelCard, finder: SeriesFinder, window_days: int, version: str) -> Score:
    task = model_kind(card.name).task
    if task == "price":
        rows = rows[rows["horizon_days"] <= card.horizon] if len(rows) else rows
    if len(rows) == 0:
        return Score(card.name, version, card.primary_metric, card.higher_is_better, 0, "", "",
                     band=band(card), statement="no realised rows yet")  # fmt: skip
    # one answer per (symbol, as-of date, horizon, target date): a client asking twice is one forecast, not two
    order = [c for c in ("as_of", "recorded_at", "key") if c in rows.columns]
    rows = rows.sort_values(order, kind="stable")
    unique = rows.drop_duplicates(subset=["scored_symbol", "as_of", "horizon_days", "target_date"], keep="first")
    rows, repeats = unique.reset_index(drop=True), len(rows) - len(unique)
    score = Score(card.name, version, card.primary_metric, card.higher_is_better, len(rows), str(rows["as_of"].iloc[0]),
                  str(rows["as_of"].iloc[-1]), band=band(card), repeats=repeats)  # fmt: skip
    if task == "regime":
        score.regimes = regime_check(rows)
        score.statement = score.regimes["statement"]
        return score
    y, p = rows["realised"].to_numpy(float), rows["prediction"].to_numpy(float)
    base = baseline_forecasts(task, rows, card, finder)
    score.live, score.baselines = task_metrics(task, y, p, base, rows)
    score.rolling = _rolling(task, rows, y, p, base, card.primary_metric, window_days)
    score.signal = live_signal(task, rows, p, base, card, finder)
    _verdict(score)
    if repeats:
        score.statement += f"; {repeats} repeated answer(s) for a symbol and date already scored: counted once"
    return score


def baseline_forecasts(task: str, rows: pd.DataFrame, card: ModelCard, finder: SeriesFinder) -> dict[str, np.ndarray]:
    """Each live baseline's forecast for the rows, by task."""
    n = len(rows)
    if task == "price":
        return {"random_walk": rows["label"].astype(float).to_numpy()}
    if task == "volatility":
        return {"ewma": at_rows(rows, finder, lambda close: np.sqrt(close_variance(close) * TRADING_DAYS))}
    history = training_target_mean(task, sorted(set(rows["scored_symbol"])), card, finder)
    if task == "direction":
        return {"majority": np.full(n, history)}
    return {"zero": np.zeros(n), "historical_mean": np.full(n, history)}


def training_target_mean(task: str, symbols: list[str], card: ModelCard, finder: SeriesFinder) -> float:
    """The mean of the model's target over its training period, pooled over ``symbols``' stored bars."""
    start, end = np.datetime64(card.date_start[:10], "D"), np.datetime64(card.date_end[:10], "D")
    values = []
    for symbol in symbols:
        series = finder.series(symbol)
        if series is None:
            continue
        close = series.bars.close
        target = next_day_direction(close) if task == "direction" else forward_log_return(close, card.horizon)
        inside = (series.bars.dates >= start) & (series.bars.dates <= end) & np.isfinite(target)
        values.append(target[inside])
    pooled = np.concatenate(values) if values else np.array([])
    return float(pooled.mean()) if pooled.size else float("nan")


def task_metrics(
    task: str, y: np.ndarray, p: np.ndarray, base: Mapping[str, np.ndarray], rows: pd.DataFrame
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The model's and each baseline's metrics on the same rows, as its card computes them."""
    if task == "return":
        mean = base["historical_mean"]
        return regression_metrics(y, p, mean), {k: regression_metrics(y, v, mean) for k, v in base.items()}
    if task == "direction":
        return classification_metrics(y, p), {k: classification_metrics(y, v) for k, v in base.items()}
    if task == "volatility":
        scores = volatility_metrics(y, {"model": p, **base}).metrics
        return scores.pop("model"), scores
    horizons = rows["horizon_days"].to_numpy(int)
    ours = {"mape": mape(y, p), "n": float(y.size)}
    theirs = {k: {"mape": mape(y, v), "n": float(y.size)} for k, v in base.items()}
    for h in sorted(set(horizons.tolist()) & {1, 5, 30}):
        at = horizons == h
        ours[f"mape_h{h}"] = mape(y[at], p[at])
        for k, v in base.items():
            theirs[k][f"mape_h{h}"] = mape(y[at], v[at])
    return ours, theirs


#: IC summary keys kept in a score's ``signal`` (of ``signal.information_coefficient``'s ``pearson`` and ``rank``).
IC_KEYS = ("mean", "std", "ir", "t_stat", "ci_low", "ci_high", "periods", "evidence")


def live_signal(
    task: str, rows: pd.DataFrame, p: np.ndarray, base: Mapping[str, np.ndarray], card: ModelCard, finder: SeriesFinder
) -> dict[str, Any] | None:
    """The live IC of the model (and of the volatility's EWMA baseline) beside the walk-forward's, or None for a task
    whose card has no IC (price, regime)."""
    if task not in ("return", "direction", "volatility"):
        return None
    realised = rows["realised"].to_numpy(float)
    if task == "direction":  # P(up) against the forward return, as the card's quant record takes it
        realised = at_rows(rows, finder, lambda close: forward_log_return(close, card.horizon))
    frame = pd.DataFrame({"date": rows["as_of"].to_numpy(str), "symbol": rows["scored_symbol"].to_numpy(str),
                          "realised": realised})  # fmt: skip
    forecasts = {"model": p} | ({"ewma": base["ewma"]} if task == "volatility" else {})
    out: dict[str, Any] = {}
    for name, values in forecasts.items():
        ic = information_coefficient(frame.assign(prediction=values).dropna(), card.horizon)
        out[name] = {"kind": ic["kind"]} | {k: {key: ic[k][key] for key in IC_KEYS} for k in ("pearson", "rank")}
    quant = card.quant if isinstance(card.quant, Mapping) else {}
    walked = quant.get("ic")
    if isinstance(walked, Mapping) and "rank" in walked:
        out["walk_forward"] = {k: {key: walked[k].get(key) for key in IC_KEYS} for k in ("pearson", "rank")}
    return out


def at_rows(rows: pd.DataFrame, finder: SeriesFinder, per_bar: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``per_bar`` of each row's stored closes, taken at the row's as-of bar (NaN where there is none)."""
    out = np.full(len(rows), np.nan)
    for symbol, index in rows.groupby("scored_symbol").groups.items():
        series = finder.series(str(symbol))
        if series is None:
            continue
        values = per_bar(series.bars.close)
        positions = [series.position(d) for d in rows.loc[index, "as_of"]]
        out[np.asarray(index)] = [np.nan if i is None else values[i] for i in positions]
    return out


def _rolling(
    task: str,
    rows: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    base: Mapping[str, np.ndarray],
    metric: str,
    window_days: int,
) -> pd.DataFrame:
    """The primary metric of the model and of each baseline over the last ``window_days`` as-of dates, at each
    as-of date where the window holds at least :data:`MIN_ROWS` rows."""
    dates = rows["as_of"].to_numpy(str)
    days = np.unique(dates)
    records = []
    for i, day in enumerate(days):
        inside = (dates >= days[max(0, i - window_days + 1)]) & (dates <= day)
        if inside.sum() < MIN_ROWS:
            continue
        part = {k: v[inside] for k, v in base.items()}
        ours, theirs = task_metrics(task, y[inside], p[inside], part, rows[inside])
        records.append({"as_of": str(day), "rows": int(inside.sum()), "model": ours.get(metric, np.nan)}
                       | {k: m.get(metric, np.nan) for k, m in theirs.items()})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=["as_of", "rows", "model", *base])


def _worse(a: float, b: float, higher_is_better: bool) -> bool:
    return bool(a < b) if higher_is_better else bool(a > b)


def _verdict(score: Score) -> None:
    """``below_band_since``, ``worse_than_baseline_days`` and the statement, from the rolling window."""
    rolling, metric = score.rolling, score.metric
    if rolling is None or rolling.empty:
        score.statement = f"{score.rows} realised row(s): too few for a window of {MIN_ROWS}"
        return
    higher = score.higher_is_better
    baselines = [c for c in rolling.columns if c not in ("as_of", "rows", "model")]
    best = (rolling[baselines].max(axis=1) if higher else rolling[baselines].min(axis=1)).to_numpy(float)
    if metric == "auc":
        best = np.full(len(rolling), 0.5)  # any constant forecast's AUC (training/evaluation/skill.py)
    model = rolling["model"].to_numpy(float)
    trailing = [_worse(m, b, higher) for m, b in zip(model, best, strict=True)]
    score.worse_than_baseline_days = _run_length(trailing)
    latest = (
        f"{metric} {model[-1]:.4g} over the last {int(rolling['rows'].iloc[-1])} rows to {rolling['as_of'].iloc[-1]}"
    )
    if score.band is None:
        score.statement = f"live {latest}; the card has no fold values to compare with"
        return
    low, high = score.band
    edge = low if higher else high
    outside = [_worse(m, edge, higher) for m in model]
    run = _run_length(outside)
    folds = f"walk-forward folds {low:.4g} .. {high:.4g}"
    if run:
        score.below_band_since = str(rolling["as_of"].iloc[-run])
        score.statement = (f"live is below what walk-forward promised since {score.below_band_since}: {latest}; "
                           f"{folds}")  # fmt: skip
    elif _worse(high if higher else low, model[-1], higher):  # better than the best fold: a reason for suspicion
        score.statement = (f"live is above what walk-forward promised (better than every fold: suspect in-sample "
                           f"dates or luck before trusting it): {latest}; {folds}")  # fmt: skip
    else:
        score.statement = f"live is within what walk-forward promised: {latest}; {folds}"
    score.statement += f"; best baseline {best[-1]:.4g}"


def _run_length(flags: list[bool]) -> int:
    """How many of the last ``flags`` are true in a row."""
    run = 0
    for flag in reversed(flags):
        if not flag:
            break
        run += 1
    return run


def regime_check(rows: pd.DataFrame) -> dict[str, Any]:
    """Realised volatility (annualised, of the next day's log return) of the days each regime was served on, and
    whether it rises from the calmest state index to the most turbulent among states served on enough days."""
    by_state: dict[int, dict[str, Any]] = {}
    for state, part in rows.groupby(rows["prediction"].astype(int)):
        r = part["realised"].to_numpy(float)
        r = r[np.isfinite(r)]
        volatility = float(np.sqrt(np.mean(r**2) * TRADING_DAYS)) if r.size else np.nan
        by_state[int(state)] = {"label": str(part["label"].iloc[0]), "days": int(r.size), "volatility": volatility}
    compared = [s for s in sorted(by_state) if by_state[s]["days"] >= MIN_REGIME_DAYS]
    vols = [by_state[s]["volatility"] for s in compared]
    ordered = len(compared) >= 2 and all(a < b for a, b in pairwise(vols))
    if len(compared) < 2:
        statement = f"fewer than two regimes served on {MIN_REGIME_DAYS}+ realised days: nothing to compare yet"
    else:
        parts = ", ".join(f"{by_state[s]['label']} {by_state[s]['volatility']:.1%}" for s in compared)
        statement = f"realised volatility by served regime {'rises' if ordered else 'does NOT rise'}: {parts}"
    return {"states": by_state, "compared": compared, "ordered": ordered if len(compared) >= 2 else None,
            "statement": statement}  # fmt: skip
