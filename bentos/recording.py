"""What the service records of every answer (issue 16), through BentoML's monitoring API (``bentoml.monitor``).

One monitor, :data:`MONITOR`, with one schema (BentoML fixes a monitor's columns at its first record in a worker):
a row per model answer, with the columns of :data:`COLUMNS`, to which BentoML's default monitor adds
``timestamp``, ``request_id`` and ``trace_id``. ``prediction`` is the answer's number: the expected log return,
P(up), the annualised volatility, the regime's state index (``label`` its name) and, for ``forecast_price``, one row
per forecast date with its price (``target_date`` the date, ``label`` the anchor close); ``features`` is the feature
row the tabular models read (JSON text, so that the monitor can compute drift from it), empty for Prophet.

BentoML's default monitor writes the rows as JSON lines to ``<log_path>/predictions/data/data.<worker>.log``,
rotated daily, through Python logging: each line is written and flushed as the answer leaves (a ``FileHandler``
flushes every record). A graceful shutdown therefore loses nothing; a crash loses the answers not yet written and
can leave a truncated last line, which ingestion (``monitoring/store.py``) skips and reports. Its configuration can
send the same rows elsewhere (``monitoring.type: otlp`` or a class of one's own, in the BentoML configuration).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    ("prediction", "prediction", "numerical"),
    ("label", "prediction", "categorical"),
)
NAMES = tuple(name for name, _, _ in COLUMNS)


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
) -> dict[str, Any]:
    """One recorded answer (strings where a value is absent: BentoML's monitor logs every column of every row)."""
    import json

    return {
        "method": method,
        "model": model,
        "version": version,
        "symbol": symbol or "",
        "as_of": as_of,
        "horizon_days": int(horizon_days),
        "target_date": target_date,
        "features": json.dumps([float(v) for v in features]) if len(features) else "",
        "prediction": float(prediction),
        "label": label,
    }


def write(rows: Sequence[dict[str, Any]]) -> None:
    """Record ``rows`` through ``bentoml.monitor`` (one monitor record, one JSON line a row)."""
    if not rows:  # never an empty record: BentoML 1.4 then leaves the record open and the next one fails an assert
        return
    import bentoml

    with bentoml.monitor(MONITOR) as monitor:
        for name, role, kind in COLUMNS:
            monitor.log_batch([r[name] for r in rows], name, role, kind)
