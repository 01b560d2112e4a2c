"""Challengers in shadow: the newest trained but unpromoted version of a model, scored offline on the (symbol, date)
pairs production answered live, so that a challenger and production compare on live dates, not only on history.

A challenger of a per-row model (returns, direction, volatility) predicts from the feature rows production was served
with (recorded exactly, ``bentos/recording.py``), through the service's own runners (``bentos/runners.py``); a
challenger trained on other features cannot use them and says so. Prophet's and the regime's challengers are not
scored in shadow: a price forecast or a filtered regime needs each window's bars, which the record does not keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from features.catalog import model_kind
from monitoring.live_drift import feature_matrix
from monitoring.outcomes import REALISED, SeriesFinder
from monitoring.scorecard import Score, score_version
from training.registry.card import ModelCard


@dataclass(frozen=True)
class Challenger:
    model: str
    version: str
    card: ModelCard


def challengers_of(model: str, version: str, production: ModelCard) -> list[Challenger]:
    """The newest stored version of ``model`` trained after the production ``version`` and never promoted."""
    from training.registry.store import STAGE_LABEL, Stage, list_models

    trained = datetime.fromisoformat(production.created_at)
    newer = [m for m in list_models((model,)) if m.version != version and m.created > trained
             and m.labels.get(STAGE_LABEL) not in (Stage.PRODUCTION, Stage.RETIRED)]  # fmt: skip
    for stored in newer:  # newest first
        card = stored.card_or_none()
        if card is not None:
            return [Challenger(model, stored.version, card)]
    return []


def shadow_scores(
    frame: pd.DataFrame,
    model: str,
    version: str,
    challengers: list[Challenger],
    finder: SeriesFinder,
    window_days: int,
) -> list[Score]:
    """Each challenger's :class:`Score` on production's realised rows, its predictions in place of production's."""
    scores: list[Score] = []
    if not challengers or not len(frame):
        return scores
    rows = frame[(frame["model"] == model) & (frame["version"] == version) & (frame["status"] == REALISED)]
    for challenger in challengers:
        features, fits = feature_matrix(rows, len(challenger.card.feature_names))
        try:
            predicted, why = shadow_predictions(challenger, features[fits])
        except Exception as error:  # one challenger's trouble never stops the monitor run
            predicted, why = None, f"{type(error).__name__}: {error}"
        if predicted is None:
            score = Score(model, challenger.version, challenger.card.primary_metric, challenger.card.higher_is_better,
                          0, "", "", statement=f"not scored in shadow: {why}")  # fmt: skip
        else:
            score = score_version(rows[fits].assign(prediction=predicted, version=challenger.version),
                                  challenger.card, finder, window_days, challenger.version)  # fmt: skip
            if not fits.all():
                score.statement += (f"; {int((~fits).sum())} of {fits.size} answers left out: their recorded feature "
                                    f"row is not of the challenger's length")  # fmt: skip
        scores.append(score)
    return scores


def shadow_predictions(challenger: Challenger, features: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The challenger's predictions for the recorded feature rows (decoded), or None and why it has none."""
    import bentoml

    from bentos.runners import ModelMismatchError, load_runner

    kind = model_kind(challenger.model)
    if kind.task in ("price", "regime"):
        return None, f"a {kind.task} model needs each window's bars, which the record does not keep"
    if not len(features):
        return np.array([]), ""
    try:
        runner = load_runner(challenger.model, bentoml.models.get(f"{challenger.model}:{challenger.version}"))
    except ModelMismatchError as error:
        return None, str(error)
    return runner.predict(features), ""  # type: ignore[attr-defined]


def live_comparison(
    model: str, challenger_tag: str, production_tag: str, database: str | None = None, snapshots: Any = None
) -> dict[str, Any] | None:
    """The challenger and production on the live dates production answered (the prediction store's realised rows),
    for the retrain gate: ``{"detail", "values"}``, or None when there is nothing to compare (no store, no realised
    answer, a model not scored in shadow)."""
    from data.settings import DataSettings
    from data.snapshots import SnapshotStore
    from monitoring.outcomes import outcomes
    from monitoring.scorecard import WINDOW_DAYS
    from monitoring.store import PredictionStore
    from training.registry.store import get_model

    production_version, challenger_version = production_tag.partition(":")[2], challenger_tag.partition(":")[2]
    rows = PredictionStore(database).rows(model=model, version=production_version)
    if not rows or model_kind(model).task in ("price", "regime"):
        return None
    store = snapshots or SnapshotStore(DataSettings().snapshots)
    frame = outcomes(rows, store)
    frame = frame[frame["status"] == REALISED]
    production, challenger = get_model(production_tag).card_or_none(), get_model(challenger_tag).card_or_none()
    if not len(frame) or production is None or challenger is None:
        return None
    finder = SeriesFinder(store)
    ours = score_version(frame, production, finder, WINDOW_DAYS, production_version)
    (theirs,) = shadow_scores(frame, model, production_version, [Challenger(model, challenger_version, challenger)],
                              finder, WINDOW_DAYS)  # fmt: skip
    metric = production.primary_metric
    if metric not in theirs.live or metric not in ours.live:
        return {"detail": f"live dates: {theirs.statement}", "values": {}}
    values = {"challenger": theirs.live[metric], "production": ours.live[metric], "answers": float(ours.rows)}
    detail = (f"on {ours.rows} live answers ({ours.first}..{ours.last}): {metric} {values['challenger']:.4g} against "
              f"production's {values['production']:.4g} (informational: the walk-forward decides)")  # fmt: skip
    return {"detail": detail, "values": values}
