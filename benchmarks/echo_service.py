"""The floor of the service benchmark: the production service's HTTP shape with no model and no feature work.

Same BentoML configuration as ``bentos.service.MarketModels`` (one worker, access log off, same timeout), the same
HTTP guards in front (``bentos.security.guard_http``: API keys when configured, body limit, no form bodies), same
request schema (``BarWindow``, parsed and validated by pydantic exactly as in production) and the same response
schema (``DirectionPrediction``), but the answer is a constant. What ``predict_direction`` costs above ``echo``
is the price of the model: OHLCV validation, features, the booster and building the answer.

Serve with ``bentoml serve benchmarks.echo_service:Echo`` from the project root (``benchmarks/bench_service.py``
does). ``echo`` is a coroutine like ``predict_direction`` (BentoML runs both on the worker's event loop);
``echo_sync`` is the same as a plain ``def`` like ``predict_all`` and ``forecast_price`` (BentoML's thread pool).
"""

from __future__ import annotations

import os

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

from typing import Any, cast

import bentoml

from bentos.schemas import BarWindow, DirectionPrediction, ModelRef
from bentos.security import guard_http
from bentos.settings import ServiceSettings

_ANSWER = DirectionPrediction(
    as_of="2018-12-31",
    horizon_days=1,
    probability_up=0.5,
    direction="up",
    threshold=0.5,
    model=ModelRef(name="echo", version="none"),
)


@bentoml.service(
    name="mlops_finance_echo",
    workers=1,
    traffic={"timeout": 60},
    logging={"access": {"enabled": False}},
)
class Echo:
    """A constant ``DirectionPrediction`` for a parsed ``BarWindow``."""

    def __init__(self) -> None:
        if cpus := os.environ.get("MLOPS_WORKER_CPUS"):  # as MarketModels does (see bentos.worker.pin_worker)
            chosen = {int(c) for c in cpus.split(",")}
            for thread in os.listdir("/proc/self/task"):
                os.sched_setaffinity(int(thread), chosen)

    @bentoml.api
    async def echo(self, bars: BarWindow) -> DirectionPrediction:
        """The same request and response types as ``predict_direction``, on the event loop like it; nothing computed."""
        return _ANSWER.model_copy(update={"as_of": bars.date[-1] if bars.date else ""})

    @bentoml.api
    def echo_sync(self, bars: BarWindow) -> DirectionPrediction:
        """``echo`` as a plain ``def``, which BentoML runs in its thread pool (like ``predict_all``)."""
        return _ANSWER.model_copy(update={"as_of": bars.date[-1] if bars.date else ""})


guard_http(cast(Any, Echo), ServiceSettings())  # the service's HTTP guards (API keys when configured, body limit)
