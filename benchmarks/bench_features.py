"""Benchmark of the feature pipeline and OHLCV validation (issue: foundation).

Targets: features of one 300-bar window p50 < 2 ms; the whole 5031-bar S&P 500 history < 50 ms;
validation of a 300-bar window < 1 ms. Run: ``.venv/bin/python benchmarks/bench_features.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._report import Figure, time_calls, write_results
from data.sources import EmbeddedSource
from features import DEFAULT_SPEC, Bars, validate_bars, validate_ohlcv


def p50_figure(what: str, times: np.ndarray, target: str = "-") -> Figure:
    """The median of ``times`` (ms), with its p95 beside it."""
    p50, p95 = (round(float(np.percentile(times, q)), 3) for q in (50, 95))
    return Figure(what, f"{p50:.3f} ms (p95 {p95:.3f})", p50, "ms", target)


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

    median = round(float(np.percentile(whole, 50)), 1)
    figures = [
        p50_figure("features, one 300-bar window (all 300 rows)", window, "p50 < 2 ms"),
        p50_figure("features, last row of a 300-bar window (serving)", latest),
        Figure("features, whole S&P 500 history (5031 bars)", f"{median:.1f} ms median", median, "ms", "< 50 ms"),
        p50_figure("validate_bars, 300 bars as JSON lists (serving)", from_lists, "p50 < 1 ms"),
        p50_figure("validate_ohlcv, 300-bar pandas DataFrame", from_frame, "p50 < 1 ms"),
    ]
    notes = (
        f"{len(spec.names)} features, lookback {spec.lookback}, FeatureSpec {spec.version_hash}. "
        "Figures on this shared 2-core VM vary by up to ~40 % between runs."
    )
    path = write_results("features", ".venv/bin/python benchmarks/bench_features.py", figures, notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
