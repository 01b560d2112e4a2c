"""What the yfinance source needs around ``yf.download``: the library's calls, an overall deadline that cuts a call
that hangs, and the flags on histories shorter than the rest of the universe (``data/sources.py`` uses them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

Downloader = Callable[..., pd.DataFrame | None]


def yfinance_download(*args: Any, **kwargs: Any) -> pd.DataFrame | None:
    import yfinance as yf

    return yf.download(*args, **kwargs)


def yfinance_errors() -> dict[str, str]:
    """The per-ticker errors yfinance recorded for its last download (it logs them instead of raising)."""
    try:
        from yfinance import shared

        return {str(k): str(v) for k, v in getattr(shared, "_ERRORS", {}).items()}
    except ImportError:  # pragma: no cover - yfinance is a dependency
        return {}


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


class DeadlinePassed(Exception):
    """A download was still running when the overall deadline passed."""


class AttemptFailed(Exception):
    """One download attempt gave no bars (an error, or an empty answer); tenacity retries it."""


def call_with_deadline(function: Callable[[], Any], seconds: float) -> Any:
    """Run ``function`` in a daemon thread and give up after ``seconds``: a hung socket cannot hold the pull.

    tenacity times the attempts but cannot stop one that hangs, and neither can ``concurrent.futures``: its workers
    are joined when the interpreter exits, so a hung download kept the process alive after the pull had failed (a
    5 s hang cut after 0.5 s by ``future.result(timeout=0.5)``: the process exited after 5.2 s; yfinance hangs for
    80-130 s, FACTS.md). Signals (``signal.alarm``) only reach the main thread, and Prefect runs tasks in others.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = function()
        except BaseException as error:  # handed back to the caller below
            result["error"] = error

    worker = threading.Thread(target=target, daemon=True, name="yfinance-download")
    worker.start()
    worker.join(max(seconds, 0.0))
    if worker.is_alive():
        raise DeadlinePassed(f"no answer within {seconds:.1f} s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


#: A history that starts this much after the universe's earliest first bar, or ends this much before its latest
#: last bar, is flagged in the manifest (listed later; delisted or suspended).
LATE_START = pd.Timedelta(days=30)
EARLY_END = pd.Timedelta(days=10)


def flag_histories(frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Tickers kept whose history is shorter than the universe's, with why."""
    if len(frames) < 2:
        return {}
    firsts = {t: pd.Timestamp(f["date"].min()) for t, f in frames.items()}
    lasts = {t: pd.Timestamp(f["date"].max()) for t, f in frames.items()}
    first, last = min(firsts.values()), max(lasts.values())
    flagged = {}
    for ticker in frames:
        reasons = []
        if firsts[ticker] - first > LATE_START:
            reasons.append(f"starts {firsts[ticker].date()}, after the universe's {first.date()}")
        if last - lasts[ticker] > EARLY_END:
            reasons.append(f"ends {lasts[ticker].date()}, before the universe's {last.date()} (delisted?)")
        if reasons:
            flagged[ticker] = "; ".join(reasons)
    return flagged
