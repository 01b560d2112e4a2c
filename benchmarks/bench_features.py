"""Benchmark of the feature pipeline and OHLCV validation (issue: foundation).

Targets: features of one 300-bar window p50 < 2 ms; the whole 5031-bar S&P 500 history < 50 ms;
validation of a 300-bar window < 1 ms. Run: ``.venv/bin/python benchmarks/bench_features.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import time_calls, write_results
from data.sources import EmbeddedSource
from features import DEFAULT_SPEC, Bars, validate_bars, validate_ohlcv


def ms(times: np.ndarray) -> str:
    return f"{np.percentile(times, 50):.3f} ms (p95 {np.percentile(times, 95):.3f})"


def main() -> None:
    spec = DEFAULT_SPEC
    history = validate_ohlcv(EmbeddedSource(("^GSPC",)).fetch().drop(columns="symbol"))
    window_frame = history.iloc[-300:].reset_index(drop=True)
    full = Bars.from_frame(history)
    tail = Bars.from_frame(window_frame)

    # A fresh Bars each call, so no derived array (log close, returns) is reused between calls.
    def fresh(bars: Bars) -> Bars:
        return Bars(bars.dates, bars.open, bars.high, bars.low, bars.close, bars.volume)

    window = time_calls(lambda: spec.compute(fresh(tail)), repeats=3000)
    latest = time_calls(lambda: spec.compute_latest(fresh(tail)), repeats=3000)
    whole = time_calls(lambda: spec.compute(fresh(full)), repeats=50, warmup=3)
    # The serving path: lists as a parsed JSON request holds them, validated straight into arrays.
    request = {
        "dates": window_frame["date"].dt.strftime("%Y-%m-%d").tolist(),
        **{c: window_frame[c].tolist() for c in ("open", "high", "low", "close", "volume")},
    }
    from_lists = time_calls(lambda: validate_bars(**request), repeats=3000)
    from_frame = time_calls(lambda: validate_ohlcv(window_frame), repeats=3000)

    def p50(times: np.ndarray) -> float:
        return float(np.percentile(times, 50))

    rows = [
        ("features, one 300-bar window (all 300 rows)", ms(window), "p50 < 2 ms", p50(window) < 2),
        ("features, last row of a 300-bar window (serving)", ms(latest), "-", True),
        ("features, whole S&P 500 history (5031 bars)", f"{p50(whole):.1f} ms median", "< 50 ms", p50(whole) < 50),
        ("validate_bars, 300 bars as JSON lists (serving)", ms(from_lists), "p50 < 1 ms", p50(from_lists) < 1),
        ("validate_ohlcv, 300-bar pandas DataFrame", ms(from_frame), "p50 < 1 ms", p50(from_frame) < 1),
    ]
    notes = (
        f"{len(spec.names)} features, lookback {spec.lookback}, FeatureSpec {spec.version_hash}. "
        "Figures on this shared 2-core VM vary by up to ~40 % between runs."
    )
    path = write_results("features", ".venv/bin/python benchmarks/bench_features.py", rows, notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
