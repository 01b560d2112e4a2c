"""Drift of what was served: the PSI of every feature and of each model's predictions, day by day, against the
references its card stored at training (``monitoring/drift.py`` computes one PSI).

The features are the rows the service recorded (``bentos/recording.py``, exact float64); the predictions are the
recorded answers, taken as the reference took them (``training/evaluation/drift_reference.py``: Prophet's as the
forecast log return ``log(forecast / anchor close)``, the regime's as its state index).

A PSI needs enough values: with ``n`` recent values in ``B`` bins its expected value under no drift at all is about
``(B - 1) / n`` (0.09 for 100 values in 10 bins, 0.45 for 20). So each day's PSI is taken over the recent as-of days,
back from that day, until they hold at least ``min_rows`` values and ``min_days`` days; a day before that has none.
An alert is acted on when it persists for ``persist_days`` days in a row (``monitoring/drift.persistent``).

Where traffic is thin (the served rows give no PSI at all: too few values over too few days) or has stopped (the last
served day is over ``MLOPS_MONITOR_DRIFT_STALE_SESSIONS`` business days before the newest bar: :func:`stale`), the PSI
is taken over the latest bars of the model's trained symbols instead (:func:`bars_drift`): each symbol's newest
stored bars, their feature rows computed as the service computes them, and the predictions a per-row model
(returns, direction, volatility) makes on them through the service's runner. ``ModelDrift.source`` says which was
used: the market the model would be asked about has moved either way, so both act. Persistence counts the days
that have a PSI: served as-of days, or the stored bars' days.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import ceil
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bentos.recording import decode_features
from features import DEFAULT_SPEC
from features.catalog import model_kind
from monitoring import drift
from training.evaluation.drift_reference import Reference
from training.registry.card import ModelCard

if TYPE_CHECKING:
    from monitoring.outcomes import SeriesFinder

MIN_ROWS = 100
MIN_DAYS = 21
PERSIST_DAYS = 5
PREDICTION = "prediction"
#: Why a model's predictions' drift is drawn and reported but does not trigger a retrain: the predictions reference
#: without a calibration (``training/evaluation/drift_reference.py``), by task.
PREDICTIONS_NOT_ACTED = {
    "price": "Prophet's served forecasts extend one fitted trend per symbol: their spread says which horizons "
    "were asked, not how the market moved",
}
UNCALIBRATED = "the card's prediction reference has no calibration (cards before version 7: the regime model's)"
#: Daily PSI values a thin-traffic fallback shows beyond its first (each symbol's bars: the first PSI's, then these).
BARS_DAYS = 63
SERVED = "served"


@dataclass(frozen=True)
class DriftRules:
    warn: float = drift.WARN
    alert: float = drift.ALERT
    min_rows: int = MIN_ROWS
    min_days: int = MIN_DAYS
    persist_days: int = PERSIST_DAYS


@dataclass
class ModelDrift:
    """One served model version's daily PSI per feature and for its predictions."""

    model: str
    version: str
    daily: pd.DataFrame  # as_of, name, rows, psi, alert_at, level
    persistent: list[str] = field(default_factory=list)  # names whose alert has persisted to the last day
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it has no PSI
    reported_only: dict[str, str] = field(default_factory=dict)  # name -> why its alert does not act
    source: str = SERVED  # or, where traffic was thin, which bars (see the module's docstring)

    @property
    def acting(self) -> list[str]:
        """The persistent alerts the monitor acts on (a retrain): all but those :attr:`reported_only`."""
        return [name for name in self.persistent if name not in self.reported_only]

    def latest(self) -> pd.DataFrame:
        """Each name's PSI on the last day, the most drifted first: highest as a share of its own alert level
        (a calibrated card raises a name's level, so the raw PSI alone would rank names the monitor finds quiet)."""
        if self.daily.empty:
            return self.daily
        last = self.daily[self.daily["as_of"] == self.daily["as_of"].max()]
        order = (last["psi"] / last["alert_at"]).sort_values(ascending=False, kind="stable").index
        return last.loc[order].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "source": self.source, "persistent": self.persistent,
                "skipped": self.skipped, "reported_only": self.reported_only,
                "latest": self.latest().to_dict("records")}  # fmt: skip


def daily_psi(
    days: np.ndarray, values: np.ndarray, ref: Reference, rules: DriftRules, calibration: dict[str, Any] | None = None
) -> pd.DataFrame:
    """The PSI at each as-of day of ``days`` over the values of the recent days (see the module's docstring), with
    its level against the thresholds of that many days (``monitoring.drift.thresholds``)."""
    order = np.argsort(days, kind="stable")
    days, values = days[order], values[order]
    unique = np.unique(days)
    ends = np.searchsorted(days, unique, side="right")
    starts = np.searchsorted(days, unique, side="left")
    records = []
    for i, day in enumerate(unique):
        for first in range(i, -1, -1):  # back from the day until enough days and values
            count = ends[i] - starts[first]
            if i - first + 1 >= rules.min_days and count >= rules.min_rows:
                value = drift.psi(ref, values[starts[first] : ends[i]])
                warn, alert = drift.thresholds(calibration, i - first + 1, rules.warn, rules.alert)
                records.append({"as_of": str(day), "rows": int(count), "psi": value, "alert_at": alert,
                                "level": drift.level(value, warn, alert)})  # fmt: skip
                break
    return pd.DataFrame.from_records(records, columns=["as_of", "rows", "psi", "alert_at", "level"])


def served_predictions(task: str, rows: pd.DataFrame) -> np.ndarray:
    """The recorded predictions as the card's prediction reference took them."""
    prediction = rows["prediction"].to_numpy(float)
    if task == "price":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(prediction / rows["label"].astype(float).to_numpy())
    return prediction


def model_drift(rows: pd.DataFrame, card: ModelCard, version: str, rules: DriftRules | None = None) -> ModelDrift:
    """Daily PSI of the features and predictions ``rows`` (one model version's recorded rows) served."""
    result = _empty(card, version)
    days = rows["as_of"].to_numpy(str)
    task = model_kind(card.name).task
    series: dict[str, np.ndarray] = {PREDICTION: served_predictions(task, rows)}
    matrix, fits = feature_matrix(rows, len(card.feature_names))
    missing = int((~fits).sum())
    if missing == len(rows):
        result.skipped["features"] = "the recorded rows carry no feature row of the card's length" + (
            " (a price forecast records none: Prophet fits on the bars)" if task == "price" else ""
        )
    else:
        series |= {name: matrix[:, i] for i, name in enumerate(card.feature_names)}
        if missing:
            result.skipped["features (some rows)"] = (
                f"{missing} of {len(rows)} recorded rows carry no feature row of the card's length: left out"
            )
    return _psi_by_name(result, card, days, series, rules or DriftRules())


def bars_drift(
    card: ModelCard,
    version: str,
    finder: SeriesFinder,
    rules: DriftRules | None = None,
    predict: Callable[[np.ndarray], np.ndarray] | None = None,
    why: str = "served rows too few",
) -> ModelDrift:
    """Where traffic is thin: the daily PSI of the features over the latest stored bars of ``card``'s trained
    symbols (each bar its own as-of day), and of ``predict``'s answers on them when given (a per-row model's)."""
    rules = rules or DriftRules()
    result = _empty(card, version)
    if card.feature_spec_hash != DEFAULT_SPEC.version_hash:
        result.skipped["*"] = f"the card's features ({card.feature_spec_hash}) are not this code's: not recomputed"
        return result
    found = [s for s in (finder.series(symbol) for symbol in card.symbols) if s is not None]
    span = max(rules.min_days, ceil(rules.min_rows / max(len(found), 1))) + BARS_DAYS
    days, rows = [], []
    for stored in found:
        bars = stored.bars.tail(span + DEFAULT_SPEC.lookback)
        rows.append(DEFAULT_SPEC.compute(bars, rows=min(span, len(bars.dates))))
        days.append(bars.dates[-rows[-1].shape[0] :].astype(str))
    ends = ", ".join(f"{s.symbol} to {s.last}" for s in found[:5]) + (", ..." if len(found) > 5 else "")
    result.source = (f"latest bars of {len(found)} of the {len(card.symbols)} trained symbol(s) ({ends}): "
                     f"{why}")  # fmt: skip
    if not found:
        result.skipped["*"] = "no stored snapshot holds any trained symbol"
        return result
    matrix = np.concatenate(rows)
    series: dict[str, np.ndarray] = {name: matrix[:, i] for i, name in enumerate(card.feature_names)}
    if predict is not None:
        complete = np.isfinite(matrix).all(axis=1)
        answers = np.full(matrix.shape[0], np.nan)
        answers[complete] = predict(matrix[complete])
        series = {PREDICTION: answers} | series
    else:
        result.skipped[PREDICTION] = f"a {model_kind(card.name).task} model's answers need its fit on each window"
    return _psi_by_name(result, card, np.concatenate(days), series, rules)


def stale(drift: ModelDrift, rows: pd.DataFrame, finder: SeriesFinder, sessions: int) -> str:
    """Why the served drift no longer describes the market, or ``""``: its last as-of day is more than ``sessions``
    business days before the newest stored bar of the symbols it was served for (traffic stopped or thinned, and the
    old days' alerts would keep acting)."""
    if drift.daily.empty or "scored_symbol" not in rows.columns:
        return ""
    ends = [s.last for s in (finder.series(str(x)) for x in set(rows["scored_symbol"]) if x) if s is not None]
    if not ends:
        return ""
    last, market = str(drift.daily["as_of"].max()), max(ends)
    behind = int(np.busday_count(last, market))
    return f"served rows end {last}, {behind} sessions before the stored bars ({market})" if behind > sessions else ""


def _empty(card: ModelCard, version: str) -> ModelDrift:
    return ModelDrift(card.name, version, pd.DataFrame(columns=["as_of", "name", "rows", "psi", "alert_at", "level"]))


def _psi_by_name(
    result: ModelDrift, card: ModelCard, days: np.ndarray, series: dict[str, np.ndarray], rules: DriftRules
) -> ModelDrift:
    """``result`` with the daily PSI of each of ``series`` (name -> values on ``days``) against the card's reference,
    its persistent alerts, and why a name has none."""
    reference = card.drift_reference or {}
    if not reference:
        result.skipped["*"] = f"card version {card.card_version} has no drift reference (version 5 on)"
        return result
    if PREDICTION in series and "calibration" not in reference["predictions"]:
        result.reported_only[PREDICTION] = PREDICTIONS_NOT_ACTED.get(model_kind(card.name).task, UNCALIBRATED)
    frames = []
    for name, values in series.items():
        spec = reference["predictions"] if name == PREDICTION else reference["features"].get(name)
        if spec is None:
            calendar = name in reference.get("calendar_features", ())
            result.skipped[name] = "a function of the date: not checked" if calendar else "no reference"
            continue
        ref = Reference.from_dict(spec)
        keep = np.isfinite(values)
        frame = daily_psi(days[keep], values[keep], ref, rules, spec.get("calibration"))
        if frame.empty:
            result.skipped[name] = f"fewer than {rules.min_rows} values over {rules.min_days}+ days"
            continue
        frames.append(frame.assign(name=name))
        if drift.persistent(frame["level"].tolist(), rules.persist_days):
            result.persistent.append(name)
    if frames:
        result.daily = pd.concat(frames, ignore_index=True)[["as_of", "name", "rows", "psi", "alert_at", "level"]]
    return result


def feature_matrix(rows: pd.DataFrame, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The recorded feature rows, decoded once (rows x ``width``; NaN where a row's is not of that length), and which
    rows were of that length."""
    matrix = np.full((len(rows), width), np.nan)
    fits = np.zeros(len(rows), dtype=bool)
    for i, text in enumerate(rows["features"]):
        values = decode_features(text)
        if len(values) == width:
            matrix[i], fits[i] = values, True
    return matrix, fits
