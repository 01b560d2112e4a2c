"""What the service records of every answer (issue 16), through BentoML's monitoring API (``bentoml.monitor``).

One monitor, :data:`MONITOR`, with one schema (BentoML fixes a monitor's columns at its first record in a worker):
a row per model answer, with the columns of :data:`COLUMNS`, to which BentoML's default monitor adds
``timestamp``, ``request_id`` and ``trace_id``. ``prediction`` is the answer's number: the expected log return,
P(up), the annualised volatility, the regime's state index (``label`` its name) and, for ``forecast_price``, one row
per forecast date with its price (``target_date`` the date, ``label`` the anchor close); ``features`` is the feature
row the tabular models read, empty for Prophet: its float64 values as base64 text (:func:`encode_features`,
:func:`decode_features`), exact and ~25x cheaper to write than JSON numbers (50 us for 40 features), so that
the monitor can compute drift from it; ``window`` identifies the bars of a window sent without a symbol
(:func:`window_digest`; empty when a symbol is named), so that the monitor can find its stored series; ``row`` is
the row's place in its record (:data:`ROW`).

BentoML's default monitor writes the rows as JSON lines to ``<log_path>/predictions/data/data.<worker>.log``,
rotated daily, through Python logging: each line is written and flushed as the answer leaves (a ``FileHandler``
flushes every record). A graceful shutdown therefore loses nothing, nor does a killed server (the lines are in the
kernel's page cache); a crash of the machine can lose what the kernel had not flushed and leave a truncated last
line, which ingestion (``monitoring/store.py``) waits on and recovers from. Its configuration can send the same rows
elsewhere (``monitoring.type: otlp`` or a class of one's own, in the BentoML configuration).

A monitor class of our own writing each record in one ``write`` call (~100 against ~150-180 us a row in process) was
measured and dropped: ``predict_direction``'s throughput with recording kept 81 % of it without, with BentoML's
monitor and with ours alike. What the served path felt was the window digest's copies (now hashed in place) and
``bentoml.monitor``'s per-call configuration lookup (now skipped after the first record: :func:`write`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from features.pipeline import Bars

MONITOR = "predictions"
#: (column, BentoML role, BentoML data type), in the order every row is logged.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("method", "feature", "categorical"),
    ("model", "feature", "categorical"),
    ("version", "feature", "categorical"),
    ("symbol", "feature", "categorical"),
    ("as_of", "feature", "categorical"),
    ("horizon_days", "feature", "numerical"),
    ("target_date", "feature", "categorical"),
    ("features", "feature", "categorical"),
    ("window", "feature", "categorical"),
    ("prediction", "prediction", "numerical"),
    ("label", "prediction", "categorical"),
    ("row", "feature", "numerical"),
)
#: the column :func:`write` fills: a row's place in its record (0, 1, ...), so that two rows of one answer that are
#: otherwise equal (a batch naming the same window and symbol twice) are two distinct lines, and two stored rows
ROW = "row"
#: the columns of a row (:func:`row`); a line without ``row`` was written before it existed (its place is 0)
NAMES = tuple(name for name, _, _ in COLUMNS if name != ROW)


def row(
    method: str,
    model: str,
    version: str,
    as_of: str,
    horizon_days: int,
    prediction: float,
    *,
    symbol: str | None = None,
    label: str = "",
    target_date: str = "",
    features: Sequence[float] = (),
    window: str = "",
) -> dict[str, Any]:
    """One recorded answer (strings where a value is absent: BentoML's monitor logs every column of every row)."""
    return {
        "method": method,
        "model": model,
        "version": version,
        "symbol": symbol or "",
        "as_of": as_of,
        "horizon_days": int(horizon_days),
        "target_date": target_date,
        "features": encode_features(features),
        "window": window,
        "prediction": float(prediction),
        "label": label,
    }


def encode_features(features: Sequence[float]) -> str:
    """A feature row as base64 of its little-endian float64 bytes ("" for none)."""
    import base64

    import numpy as np

    values = np.asarray(features, dtype="<f8")
    return base64.b64encode(values.tobytes()).decode("ascii") if values.size else ""


def decode_features(text: str) -> list[float]:
    """The feature row :func:`encode_features` wrote."""
    import base64

    import numpy as np

    return np.frombuffer(base64.b64decode(text), dtype="<f8").tolist() if text else []


def window_digest(bars: Bars | None) -> str:
    """``"<bars>:<first date>:<digest>"`` of a window: its length, first date and the SHA-256 (first 32 hex digits)
    of its dates (days since the epoch, int64) and its OHLCV values (float64), little-endian; "" for none.

    The monitor computes the same digest over a stored series' bars ending on the window's last date: equal only
    when every bar is equal, bit for bit (``monitoring/outcomes.py``).
    """
    if bars is None:
        return ""
    import hashlib

    import numpy as np

    # the arrays' own buffers, hashed where they are (no copy: copies cost the served path ~10 % of its throughput)
    digest = hashlib.sha256(np.ascontiguousarray(bars.dates.astype("datetime64[D]", copy=False).view("<i8")).data)
    for values in (bars.open, bars.high, bars.low, bars.close, bars.volume):
        digest.update(np.ascontiguousarray(values, dtype="<f8").data)
    return f"{bars.dates.shape[-1]}:{bars.dates[0]}:{digest.hexdigest()[:32]}"


def answer_rows(
    method: str,
    answer: Any,
    features: Sequence[float] = (),
    symbol: str | None = None,
    window: str = "",
) -> list[dict[str, Any]]:
    """The recorded rows of one answer of the service (``bentos/schemas.py``): one per model answer, one per
    forecast date of a price forecast. ``window``: the :func:`window_digest` of the bars it answered."""
    from bentos import schemas

    if isinstance(answer, schemas.AllPredictions):
        parts = (
            answer.return_lightgbm,
            answer.return_random_forest,
            answer.direction,
            answer.volatility,
            answer.regime,
        )
        return [r for part in parts for r in answer_rows(method, part, features, symbol, window)]
    if isinstance(answer, schemas.PriceForecast):
        ref = answer.model
        return [
            row(method, ref.name, ref.version, answer.anchor_date, h, point.price, symbol=answer.symbol,
                label=repr(answer.anchor_close), target_date=point.date, window=window)
            for h, point in enumerate(answer.forecast, start=1)
        ]  # fmt: skip
    ref, label = answer.model, ""
    if isinstance(answer, schemas.ReturnPrediction):
        value = answer.expected_log_return
    elif isinstance(answer, schemas.DirectionPrediction):
        value, label = answer.probability_up, answer.direction
    elif isinstance(answer, schemas.VolatilityPrediction):
        value = answer.annualized_volatility
    elif isinstance(answer, schemas.RegimePrediction):
        value, label = list(answer.probabilities).index(answer.regime), answer.regime
        return [
            row(method, ref.name, ref.version, answer.as_of, 0, value, symbol=symbol, label=label, features=features,
                window=window)
        ]  # fmt: skip
    else:
        raise TypeError(f"no recorded form for {type(answer).__name__}")
    horizon = answer.horizon_days
    return [
        row(method, ref.name, ref.version, answer.as_of, horizon, value, symbol=symbol, label=label, features=features,
            window=window)
    ]  # fmt: skip


def served_rows(
    method: str, answer: Any, bars: Bars | None, features: Any = (), symbol: str | None = None
) -> list[dict[str, Any]]:
    """The rows the service records of ``answer``: with the last of the feature ``rows`` it was computed from, and
    its window's digest when no symbol names the window (what finds its stored series then)."""
    row = features[-1] if len(features) else ()
    return answer_rows(method, answer, row, symbol, "" if symbol else window_digest(bars))


def write(rows: Sequence[dict[str, Any]], log_path: Path | None = None) -> None:
    """Record ``rows`` through BentoML's monitoring API (one monitor record, one JSON line a row).

    In a served worker the monitor is BentoML's configured one: the service's ``monitoring`` settings (log path
    from ``MLOPS_MONITOR_LOG_PATH``), which BentoML's configuration may override (another ``type``, other options).
    BentoML applies them to served workers only, so in process (tests, a script using the class) the monitor gets
    ``log_path`` here; otherwise it would write to ``./monitoring`` of the working directory. A process's first
    call fixes its monitor.

    The first record goes through ``bentoml.monitor``, which creates the process's monitor; the next ones go to that
    same monitor object (``bentos/bentoml_private.opened_monitor``), opened and closed as ``bentoml.monitor`` does
    (``start_record``, ``log_batch``, ``stop_record``), without the dependency injection the context manager runs on
    every call: ~50 of the ~105 us a recorded answer cost in process (``benchmarks/bench_monitor.py``).
    """
    if not rows:  # never an empty record: BentoML 1.4 then leaves the record open and the next one fails an assert
        return
    from bentos.bentoml_private import opened_monitor

    monitor = opened_monitor(MONITOR)
    if monitor is not None:
        monitor.start_record()
        _log(monitor, rows)
        monitor.stop_record()
        return
    import bentoml

    in_process = bentoml.server_context.worker_index is None
    # an explicit None would replace the configured options too: pass them only when they are ours
    if in_process and log_path is not None:
        opened = bentoml.monitor(MONITOR, monitor_options={"log_path": str(log_path)})
    else:
        opened = bentoml.monitor(MONITOR)
    with opened as monitor:
        _log(monitor, rows)


def _log(monitor: Any, rows: Sequence[dict[str, Any]]) -> None:
    for name, role, kind in COLUMNS:
        monitor.log_batch(range(len(rows)) if name == ROW else [r[name] for r in rows], name, role, kind)
