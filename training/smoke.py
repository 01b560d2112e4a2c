"""Smoke test of a served Bento: one real request to every method, each answer checked against production.

The retrain flow runs it on ``bentoml serve <tag>`` before it keeps a promotion; the image build runs the same calls
against the container's entrypoint.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bentos.schemas import example_window
from training.bento import serve_command
from training.demo import wait_ready
from training.store import get_model


class SmokeTestError(RuntimeError):
    """The built Bento did not start or did not answer a method as it should."""


def free_port() -> int:

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call_endpoint(url: str, method: str, body: dict[str, Any]) -> Any:
    """POST one API method with a JSON body; return the decoded answer or raise :class:`SmokeTestError`."""
    request = urllib.request.Request(
        f"{url}/{method}", data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        raise SmokeTestError(f"{method} answered HTTP {error.code}: {detail}") from error
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise SmokeTestError(f"{method} failed: {type(error).__name__}: {error}") from error


def _expect_model(method: str, answer: dict[str, Any], tag: str) -> None:
    served = f"{answer['model']['name']}:{answer['model']['version']}"
    if served != tag:
        raise SmokeTestError(f"{method} answered with {served}, the Bento should serve {tag}")


def call_every_method(url: str, production: dict[str, str]) -> dict[str, float]:
    """One real request to every method of the service; check each answer names the promoted version."""
    bars = example_window()
    symbol = str(get_model(production["price_prophet"]).metadata["symbols"][0])
    timings: dict[str, float] = {}

    def call(label: str, method: str, body: dict[str, Any]) -> Any:
        started = time.perf_counter()
        answer = call_endpoint(url, method, body)
        timings[label] = round((time.perf_counter() - started) * 1e3, 1)
        return answer

    for model in ("lightgbm", "random_forest"):
        answer = call(f"predict_return[{model}]", "predict_return", {"bars": bars, "model": model})
        _expect_model("predict_return", answer, production[f"return_{model}"])
    _expect_model(
        "predict_direction",
        call("predict_direction", "predict_direction", {"bars": bars}),
        production["direction_lightgbm"],
    )
    _expect_model(
        "predict_volatility",
        call("predict_volatility", "predict_volatility", {"bars": bars}),
        production["volatility_lightgbm"],
    )
    _expect_model("detect_regime", call("detect_regime", "detect_regime", {"bars": bars}), production["regime_hmm"])
    forecast = call("forecast_price", "forecast_price", {"symbol": symbol, "periods": 5})
    _expect_model("forecast_price", forecast, production["price_prophet"])
    if len(forecast["forecast"]) != 5:
        raise SmokeTestError(f"forecast_price returned {len(forecast['forecast'])} points, 5 were asked for")
    everything = call("predict_all", "predict_all", {"bars": bars})
    _expect_model("predict_all", everything["volatility"], production["volatility_lightgbm"])
    batch = call("predict_all_batch", "predict_all_batch", {"windows": [bars, bars]})
    if batch != [everything, everything]:
        raise SmokeTestError("predict_all_batch does not repeat predict_all for the same window")
    cards = call("models", "models", {})
    served = {f"{c['name']}:{c['version']}" for c in cards}
    if served != set(production.values()):
        raise SmokeTestError(f"models lists {sorted(served)}, the Bento should serve {sorted(production.values())}")
    return timings


def smoke_test(bento_tag: str, production: dict[str, str], timeout: float) -> dict[str, Any]:
    """Serve the Bento on a free local port, call every method, stop it; raise :class:`SmokeTestError`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_PRODUCTION_FILE"}  # the Bento ships its manifest
    with tempfile.TemporaryDirectory(prefix="mlops-smoke-") as workdir:
        log_path = Path(workdir) / "serve.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                serve_command(bento_tag, port), cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            started = time.perf_counter()
            try:
                try:
                    wait_ready(url, process, timeout)
                except (RuntimeError, TimeoutError) as error:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise SmokeTestError(f"bentoml serve {bento_tag}: {error}\n{tail}") from error
                ready = time.perf_counter() - started
                timings = call_every_method(url, production)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    return {"bento": bento_tag, "ready_seconds": round(ready, 1), "milliseconds": timings}
