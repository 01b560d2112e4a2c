"""Smoke test of a served Bento: one real request to every method, each answer checked against production.

The retrain flow runs it on ``bentoml serve <tag>`` before it keeps a promotion; the image build runs the same calls
against the container's entrypoint.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bentos.schemas import example_window
from deploy.bento import serve_command


class SmokeTestError(RuntimeError):
    """The built Bento did not start or did not answer a method as it should."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    """Poll ``url``/readyz until it answers 200; raise if ``process`` exits or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the service exited with code {process.returncode}")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
    raise TimeoutError(f"the service was not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Terminate ``process`` (a server: it finishes the requests in flight), killing it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def call_endpoint(url: str, method: str, body: dict[str, Any]) -> Any:
    """POST one API method with a JSON body; return the decoded answer or raise :class:`SmokeTestError`."""
    try:
        response = httpx.post(f"{url}/{method}", json=body, timeout=60.0)
    except httpx.HTTPError as error:
        raise SmokeTestError(f"{method} failed: {type(error).__name__}: {error}") from error
    if response.is_error:
        raise SmokeTestError(f"{method} answered HTTP {response.status_code}: {response.text[:500]}")
    try:
        return response.json()
    except ValueError as error:
        raise SmokeTestError(f"{method} answered something other than JSON: {response.text[:200]!r}") from error


def _expect_model(method: str, answer: dict[str, Any], tag: str) -> None:
    served = f"{answer['model']['name']}:{answer['model']['version']}"
    if served != tag:
        raise SmokeTestError(f"{method} answered with {served}, the Bento should serve {tag}")


def call_every_method(url: str, production: dict[str, str]) -> dict[str, float]:
    """One real request to every method of the service; check each answer names the promoted version."""
    bars = example_window()
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
    cards = call("models", "models", {})
    served = {f"{c['name']}:{c['version']}" for c in cards}
    if served != set(production.values()):
        raise SmokeTestError(f"models lists {sorted(served)}, the Bento should serve {sorted(production.values())}")
    prophet = next(c for c in cards if c["name"] == "price_prophet")
    symbol = str(prophet["card"]["symbols"][0])
    forecast = call("forecast_price", "forecast_price", {"symbol": symbol, "periods": 5})
    _expect_model("forecast_price", forecast, production["price_prophet"])
    if len(forecast["forecast"]) != 5:
        raise SmokeTestError(f"forecast_price returned {len(forecast['forecast'])} points, 5 were asked for")
    everything = call("predict_all", "predict_all", {"bars": bars})
    _expect_model("predict_all", everything["volatility"], production["volatility_lightgbm"])
    batch = call("predict_all_batch", "predict_all_batch", {"windows": [bars, bars]})
    if batch != [everything, everything]:
        raise SmokeTestError("predict_all_batch does not repeat predict_all for the same window")
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
                stop(process)
    return {"bento": bento_tag, "ready_seconds": round(ready, 1), "milliseconds": timings}
