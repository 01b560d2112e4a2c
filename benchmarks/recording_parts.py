"""The service recording one part of what it records, for ``benchmarks/_recording_cost.py``: what each part costs.

``MLOPS_BENCH_RECORDING_PART`` says which part:

- ``rows``: every answer's rows built as the service builds them (``bentos.recording.served_rows``: the feature row
  encoded and, without a symbol, the window's digest), and nothing written;
- ``write``: nothing built; the rows of the server's first answer, built once, written for every answer through
  ``bentos.recording.write`` (BentoML's default monitor, as the service writes them): the monitor's own cost.

The service's module is imported and the one of its two names swapped before BentoML serves it, so the rest is the
service as committed. Serve with ``bentoml serve benchmarks.recording_parts:MarketModels`` from the project root.
"""

from __future__ import annotations

import os
from typing import Any

import bentos.service as service
from bentos.recording import served_rows

PART = os.environ.get("MLOPS_BENCH_RECORDING_PART", "")
_FIRST_ROWS: list[dict[str, Any]] = []


def _first_rows(*answer: Any) -> list[dict[str, Any]]:
    """The rows of the first answer recorded, whatever the answer (``write``)."""
    if not _FIRST_ROWS:
        _FIRST_ROWS.extend(served_rows(*answer))
    return _FIRST_ROWS


def _nothing(rows: Any, log_path: Any = None) -> None:
    """Write nothing (``rows``)."""


if PART == "rows":
    setattr(service, "write", _nothing)  # noqa: B010 (the service's module-level name, looked up on every answer)
elif PART == "write":
    setattr(service, "served_rows", _first_rows)  # noqa: B010
else:
    raise RuntimeError(f"MLOPS_BENCH_RECORDING_PART must be rows or write, not {PART!r}")

MarketModels = service.MarketModels
