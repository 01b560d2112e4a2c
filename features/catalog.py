"""The six models: their store names, what each predicts, how it is served. The one list every other place reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Task = Literal["return", "direction", "volatility", "price", "regime"]
#: how the service runs a model: a LightGBM booster, the direction booster with its calibration, the volatility
#: booster with its anchor, the forest, the HMM's filter, Prophet's per-symbol forecasts
Runtime = Literal["booster", "direction", "volatility", "forest", "regime", "prophet"]


@dataclass(frozen=True)
class ModelKind:
    name: str
    task: Task
    runtime: Runtime
    trainer: str  # "module:class" under training.models, imported only when the model is trained
    per_row: bool  # predicts from each bar's feature row (so batch inference scores it); Prophet forecasts symbols

    @property
    def trainer_module(self) -> str:
        return self.trainer.partition(":")[0]


MODELS: tuple[ModelKind, ...] = (
    ModelKind("return_lightgbm", "return", "booster", "training.models.return_lightgbm:ReturnLightGBM", True),
    ModelKind(
        "return_random_forest", "return", "forest", "training.models.return_random_forest:ReturnRandomForest", True
    ),
    ModelKind(
        "direction_lightgbm", "direction", "direction", "training.models.direction_lightgbm:DirectionLightGBM", True
    ),
    ModelKind(
        "volatility_lightgbm",
        "volatility",
        "volatility",
        "training.models.volatility_lightgbm:VolatilityLightGBM",
        True,
    ),
    ModelKind("price_prophet", "price", "prophet", "training.models.price_prophet:PriceProphet", False),
    ModelKind("regime_hmm", "regime", "regime", "training.models.regime_hmm:RegimeHMM", True),
)
MODEL_NAMES: tuple[str, ...] = tuple(kind.name for kind in MODELS)
#: the models batch inference scores, row by row
PER_ROW_MODELS: tuple[str, ...] = tuple(kind.name for kind in MODELS if kind.per_row)
BY_NAME: dict[str, ModelKind] = {kind.name: kind for kind in MODELS}


def model_kind(name: str) -> ModelKind:
    """The model called ``name``; a KeyError listing the six otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; the models are {', '.join(MODEL_NAMES)}") from None
