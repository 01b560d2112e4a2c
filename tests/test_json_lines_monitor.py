"""The service's monitor (bentos/json_lines_monitor.py) writes what BentoML's default monitor writes, in one write a
record, rotates its file as it does, and never fails an answer for a failed write."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bentoml.monitoring import DefaultMonitor

from bentos import recording
from bentos.json_lines_monitor import JsonLinesMonitor

ROWS = [
    recording.row("predict_direction", "direction_lightgbm", "v1", "2018-12-31", 1, 0.53, label="up",
                  features=[0.1, -2.5e-7, 3.0], window="252:2018-01-02:" + "f" * 32),
    recording.row("forecast_price", "price_prophet", "v2", "2018-12-31", 2, 2506.8500000000004, symbol="SP500",
                  label="2506.85", target_date="2019-01-03"),
]  # fmt: skip


@pytest.fixture(autouse=True)
def _service_monitor_reopened() -> Iterator[None]:
    """BentoML's monitors share the two loggers each configures when it opens: after a test here, the service's
    monitor opens (and points them at its own files) again on its next record."""
    yield
    from bentoml._internal.monitoring import api

    api._MONITOR_INSTANCES.pop(recording.MONITOR, None)


def record(monitor: Any, rows: list[dict[str, Any]]) -> None:
    monitor.start_record()
    recording._log(monitor, rows)
    monitor.stop_record()


def lines(folder: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / name / "data" / "data.0.log").read_text().splitlines()]


def test_it_writes_the_lines_and_schema_the_default_monitor_writes(tmp_path: Path) -> None:
    ours, theirs = JsonLinesMonitor("ours", log_path=str(tmp_path)), DefaultMonitor("theirs", log_path=str(tmp_path))
    for monitor in (ours, theirs):
        record(monitor, ROWS)
        record(monitor, ROWS[:1])
    written = {m.name: lines(tmp_path, m.name) for m in (ours, theirs)}
    assert len(written["ours"]) == 3
    for mine, default in zip(written["ours"], written["theirs"], strict=True):
        assert mine.pop("timestamp") and default.pop("timestamp")
        assert mine == default
    assert written["ours"][1]["prediction"] == 2506.8500000000004  # floats exact, as the default's
    schemas = [(tmp_path / m.name / "schema" / "schema.0.log").read_text() for m in (ours, theirs)]
    assert schemas[0] == schemas[1]


def test_the_data_file_rotates_when_its_time_comes(tmp_path: Path) -> None:
    monitor = JsonLinesMonitor("rotating", log_path=str(tmp_path))
    record(monitor, ROWS[:1])
    assert monitor.data_logger is not None
    handler = monitor.data_logger.handlers[0]
    assert isinstance(handler, logging.handlers.TimedRotatingFileHandler)
    handler.rolloverAt = int(time.time()) - 1  # the day is over
    record(monitor, ROWS[1:])
    folder = tmp_path / "rotating" / "data"
    rotated = [p for p in folder.iterdir() if p.name != "data.0.log"]
    assert len(rotated) == 1 and rotated[0].name.startswith("data.0.log.")
    assert [json.loads(line)["model"] for line in rotated[0].read_text().splitlines()] == ["direction_lightgbm"]
    assert [r["model"] for r in lines(tmp_path, "rotating")] == ["price_prophet"]


def test_a_logging_configuration_without_a_file_handler_gets_the_default_export(tmp_path: Path) -> None:
    config = tmp_path / "logging.yaml"
    config.write_text(  # block style: BentoML fills {data_filename} and the like in with str.format
        "version: 1\n"
        "disable_existing_loggers: false\n"
        "loggers:\n"
        "  bentoml_monitor_data:\n    level: INFO\n    handlers: [memory]\n    propagate: false\n"
        "  bentoml_monitor_schema:\n    level: INFO\n    handlers: []\n    propagate: false\n"
        "handlers:\n"
        "  memory:\n    class: logging.handlers.MemoryHandler\n    capacity: 100\n"
    )
    monitor = JsonLinesMonitor("configured", log_path=str(tmp_path), log_config_file=str(config))
    record(monitor, ROWS)
    assert monitor.data_logger is not None
    handler = monitor.data_logger.handlers[0]
    assert isinstance(handler, logging.handlers.MemoryHandler)
    assert [r.msg["model"] for r in handler.buffer] == ["direction_lightgbm", "price_prophet"]  # type: ignore[index]


def test_a_failed_write_is_reported_and_the_answer_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monitor = JsonLinesMonitor("failing", log_path=str(tmp_path))
    record(monitor, ROWS[:1])
    assert monitor.data_logger is not None
    handler = monitor.data_logger.handlers[0]
    assert isinstance(handler, logging.FileHandler)

    class Full:
        def write(self, text: str) -> None:
            raise OSError(28, "No space left on device")

        def flush(self) -> None: ...

    stream, handler.stream = handler.stream, Full()  # type: ignore[assignment]
    try:
        with caplog.at_level(logging.ERROR, logger="bentos.json_lines_monitor"):
            record(monitor, ROWS)  # does not raise
        assert "could not record 2 rows of monitor 'failing'" in caplog.text
    finally:
        handler.stream = stream
    record(monitor, ROWS[1:])  # and the monitor goes on recording
    assert [r["model"] for r in lines(tmp_path, "failing")] == ["direction_lightgbm", "price_prophet"]


def test_the_service_and_recording_in_process_use_it(tmp_path: Path, production_models: dict[str, str]) -> None:
    from bentos.bentoml_private import opened_monitor
    from bentos.service import MarketModels

    assert MarketModels.config["monitoring"]["type"] == recording.MONITOR_TYPE  # type: ignore[typeddict-item]
    recording.write(ROWS, tmp_path)
    assert type(opened_monitor(recording.MONITOR)) is JsonLinesMonitor
    assert [r["model"] for r in lines(tmp_path, recording.MONITOR)] == ["direction_lightgbm", "price_prophet"]
