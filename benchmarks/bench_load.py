"""Load test: the service held at its measured saturation for 60 s with a mix of every method (issue: hardening).

First the saturation point: ``wrk`` with 1, 2, 4, ... connections for ``MLOPS_LOAD_STEP_SECONDS`` (default 10) each,
until another doubling adds less than 5 % throughput; the smallest connection count within 5 % of the best is the
saturation point (more connections only queue). Then the same mix for ``MLOPS_LOAD_SECONDS`` (default 60) at that
point. Every request is valid, so every answer must be 2xx: a wrk Lua script counts the statuses per method and
records each request's latency; the table gives throughput, p50 / p99 / max and the non-2xx count. The server runs
with API keys on (the production setting), so the key check is part of what is measured.

The mix, by weight: ``predict_direction`` 4, ``predict_return`` 3 (LightGBM 2, forest 1), ``predict_volatility`` 2,
``detect_regime`` 1, ``predict_all`` 1, ``predict_all_batch`` (8 windows) 1, ``forecast_price`` 1, ``models`` 1,
each on a 300-bar window of the S&P 500.

Run: ``.venv/bin/python benchmarks/bench_load.py`` (needs ``wrk``; about 3 minutes plus training quick models
into a temporary store unless ``MLOPS_BENCH_HOME`` holds them, as for ``bench_service.py``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import Figure, write_results
from benchmarks.bench_service import Server, production_models, window

STEP_SECONDS = int(os.environ.get("MLOPS_LOAD_STEP_SECONDS", "10"))
HOLD_SECONDS = int(os.environ.get("MLOPS_LOAD_SECONDS", "60"))
MAX_CONNECTIONS = 64
PLATEAU = 0.05
KEY = "load-test-key-0123456789abcdef"

LUA = r"""
-- each wrk thread runs its own copy of this script; done() runs in the main one and reads the threads' globals
local body_dir = "%(body_dir)s"
local mix = %(mix)s
local threads = {}

function setup(thread) table.insert(threads, thread) end

local function read(path)
  local f = assert(io.open(path, "rb")); local s = f:read("*a"); f:close(); return s
end

function init(args)
  requests, names, sent, responses, bad, samples = {}, {}, {}, 0, 0, {}
  for _, entry in ipairs(mix) do
    local name, path, weight = entry[1], entry[2], entry[3]
    local body = read(body_dir .. "/" .. name .. ".json")
    local request = wrk.format("POST", path, {["Content-Type"] = "application/json",
                                              ["Authorization"] = "Bearer %(key)s"}, body)
    for _ = 1, weight do table.insert(requests, request); table.insert(names, name) end
    sent[name] = 0
  end
end

local i = 0
function request()
  i = i %% #requests + 1
  sent[names[i]] = sent[names[i]] + 1
  return requests[i]
end

-- wrk does not say which request a response answers: count the failures, keep a few of their bodies
function response(status, headers, body)
  responses = responses + 1
  if status < 200 or status > 299 then
    bad = bad + 1
    if #samples < 3 then table.insert(samples, status .. " " .. string.sub(body, 1, 200)) end
  end
end

function done(summary, latency, requests_)
  local total_sent, total_responses, total_bad = {}, 0, 0
  for _, thread in ipairs(threads) do
    for name, n in pairs(thread:get("sent")) do total_sent[name] = (total_sent[name] or 0) + n end
    total_responses = total_responses + thread:get("responses")
    total_bad = total_bad + thread:get("bad")
    for _, sample in ipairs(thread:get("samples")) do io.write("BAD " .. sample .. "\n") end
  end
  local out = {}
  for name, n in pairs(total_sent) do table.insert(out, string.format('"%%s": %%d', name, n)) end
  io.write("SENT {" .. table.concat(out, ", ") .. "}\n")
  io.write(string.format("RESPONSES %%d %%d\n", total_responses, total_bad))
  io.write(string.format("LATENCY_MS %%.3f %%.3f %%.3f %%.3f\n", latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000))
end
"""


def mix() -> list[tuple[str, str, int, dict[str, Any]]]:
    bars = window()
    return [
        ("predict_direction", "/predict_direction", 4, {"bars": bars}),
        ("predict_return_lightgbm", "/predict_return", 2, {"bars": bars, "model": "lightgbm"}),
        ("predict_return_forest", "/predict_return", 1, {"bars": bars, "model": "random_forest"}),
        ("predict_volatility", "/predict_volatility", 2, {"bars": bars}),
        ("detect_regime", "/detect_regime", 1, {"bars": bars}),
        ("predict_all", "/predict_all", 1, {"bars": bars}),
        ("predict_all_batch", "/predict_all_batch", 1, {"windows": [bars] * 8}),
        ("forecast_price", "/forecast_price", 1, {"symbol": "^GSPC", "periods": 10, "bars": bars}),
        ("models", "/models", 1, {}),
    ]


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run of the mix: requests/s, per-method (count, non-2xx), latency percentiles (ms)."""
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    sent = re.search(r"SENT (\{.*\})", out)
    answered = re.search(r"RESPONSES (\d+) (\d+)", out)
    latency = re.search(r"LATENCY_MS ([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    assert rate and sent and answered and latency, out
    p50, p99, worst, mean = (float(x) for x in latency.groups())
    return {
        "rate": float(rate.group(1)),
        "sent": json.loads(sent.group(1)),
        "responses": int(answered.group(1)),
        "non_2xx": int(answered.group(2)),
        "bad_samples": re.findall(r"BAD (.*)", out),
        "p50": p50,
        "p99": p99,
        "max": worst,
        "mean": mean,
        "socket_errors": errors.group(1) if errors else "none",
    }


def main() -> None:
    production_models()
    entries = mix()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as scratch:
        directory = Path(scratch)
        for name, _, _, body in entries:
            (directory / f"{name}.json").write_text(json.dumps(body))
        lua_mix = "{" + ", ".join(f'{{"{n}", "{p}", {w}}}' for n, p, w, _ in entries) + "}"
        script = directory / "mix.lua"
        script.write_text(LUA % {"body_dir": directory, "mix": lua_mix, "key": KEY})
        server = Server("bentos.service:MarketModels", env={"MLOPS_API_KEYS": KEY})
        server.start()
        try:
            steps: list[tuple[int, dict[str, Any]]] = []
            connections = 1
            while connections <= MAX_CONNECTIONS:
                result = run_wrk(server.url, script, connections, STEP_SECONDS)
                steps.append((connections, result))
                print(f"{connections} connections: {result['rate']:.0f} req/s, p99 {result['p99']:.0f} ms", flush=True)
                if len(steps) >= 2 and result["rate"] < steps[-2][1]["rate"] * (1 + PLATEAU):
                    break
                connections *= 2
            best = max(r["rate"] for _, r in steps)
            saturation = min(c for c, r in steps if r["rate"] >= best * (1 - PLATEAU))
            held = run_wrk(server.url, script, saturation, HOLD_SECONDS)
            print(f"held {saturation} connections for {HOLD_SECONDS} s: {held}", flush=True)
        finally:
            server.stop()

    figures = [
        Figure(
            f"saturation search: {c} connections ({STEP_SECONDS} s)",
            f"{r['rate']:.0f} req/s, p99 {r['p99']:.0f} ms",
            round(r["rate"]),
            "req/s",
        )
        for c, r in steps
    ]
    socket_errors = sum(int(n) for n in re.findall(r"\d+", held["socket_errors"]))
    figures += [
        Figure(
            f"held at saturation: {saturation} connections for {HOLD_SECONDS} s",
            f"{held['rate']:.0f} req/s",
            round(held["rate"]),
            "req/s",
        ),
        Figure("held: responses", str(held["responses"]), held["responses"], target="> 0"),
        Figure(
            "held: non-2xx responses",
            str(held["non_2xx"]) + (f" ({'; '.join(held['bad_samples'])})" if held["non_2xx"] else ""),
            held["non_2xx"],
            target="= 0",
        ),
        Figure("held: socket errors", held["socket_errors"], socket_errors, target="= 0"),
        Figure(
            "held: latency p50 / p99 / max",
            f"{held['p50']:.1f} / {held['p99']:.1f} / {held['max']:.1f} ms",
            round(held["p50"], 1),
            "ms",
        ),
        Figure("held: requests sent per method", ", ".join(f"{k} {v}" for k, v in sorted(held["sent"].items()))),
    ]
    notes = (
        "One `bentoml serve` worker with API keys on; wrk (up to two threads) on the same 2-core machine. "
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f}. The latency is of the mix, so its p99 is set "
        "by the slow methods (forecast_price: Prophet's sampling; predict_all_batch: 8 windows) queued behind."
    )
    path = write_results("load", ".venv/bin/python benchmarks/bench_load.py", figures, notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
