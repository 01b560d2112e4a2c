"""The prediction store on SQLite and on a real PostgreSQL server: what BentoML's monitor wrote is stored once, however
often and however abruptly ingestion runs (issue 16)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bentos import recording
from monitoring.store import PredictionStore, metadata, progress
from tests import postgres_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[postgres_server.Server | str]:
    """A real PostgreSQL server for this module's tests, or why there is none."""
    server = postgres_server.start()
    yield server
    if not isinstance(server, str):
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store's database: an SQLite file, or the PostgreSQL server's database emptied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    server = request.getfixturevalue("postgres")
    if isinstance(server, str):
        pytest.skip(f"no PostgreSQL server: {server}")
    import sqlalchemy as sa

    engine = sa.create_engine(server.url)
    metadata.drop_all(engine)
    engine.dispose()
    yield server.url


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    """A monitor log path of this test: BentoML's default monitor, pointed at a temporary folder."""
    from bentoml._internal.monitoring import api
    from bentoml._internal.monitoring.default import DefaultMonitor

    # what bentoml.monitor caches for the name on first use, here with this test's path
    api._MONITOR_INSTANCES[recording.MONITOR] = DefaultMonitor(recording.MONITOR, log_path=str(tmp_path / "logs"))
    yield tmp_path / "logs"
    api._MONITOR_INSTANCES.pop(recording.MONITOR, None)


def answers(n: int, method: str = "predict_direction") -> list[dict[str, object]]:
    return [
        recording.row(method, "direction_lightgbm", "v1", f"2018-01-{1 + i % 28:02d}", 1, i / n, symbol="^GSPC",
                      label="up", features=[float(i), 0.5])
        for i in range(n)
    ]  # fmt: skip


def data_file(log_dir: Path) -> Path:
    return log_dir / recording.MONITOR / "data" / "data.0.log"


def test_recorded_answers_are_stored_once_however_often_ingested(log_dir: Path, url: str) -> None:
    recording.write(answers(3))
    recording.write(answers(2, "predict_all"))
    store = PredictionStore(url)
    first = store.ingest(log_dir)
    assert (first.files, first.lines, first.new, first.already_stored, first.unreadable) == (1, 5, 5, 0, [])
    again = store.ingest(log_dir)
    assert (again.lines, again.new) == (0, 0)  # nothing past what was read
    with store.engine.begin() as connection:  # forget the progress: every line is read again, none stored twice
        connection.execute(progress.delete())
    reread = store.ingest(log_dir)
    assert (reread.lines, reread.new, reread.already_stored) == (5, 0, 5)
    rows = sorted(store.rows(method="predict_direction"), key=lambda r: r["prediction"])
    assert len(rows) == 3 and store.count() == 5
    assert rows[0]["symbol"] == "^GSPC" and rows[0]["model"] == "direction_lightgbm" and rows[0]["version"] == "v1"
    assert recording.decode_features(rows[1]["features"]) == [1.0, 0.5]
    assert rows[1]["prediction"] == pytest.approx(1 / 3)
    assert all(r["request_id"] and r["recorded_at"] for r in rows)
    recording.write(answers(1, "predict_volatility"))  # a later answer: only it is new
    assert store.ingest(log_dir).new == 1 and store.count() == 6


def test_equal_rows_of_one_answer_are_each_stored_once(log_dir: Path, url: str) -> None:
    """A batch naming the same window and symbol twice answers twice, with equal rows, timestamp and request id:
    their ``row`` (place in the record) keeps them two lines and two stored rows, however often ingested."""
    same = answers(1) * 3
    assert same[0] == same[2]
    recording.write(same)
    lines = [json.loads(line) for line in data_file(log_dir).read_text().splitlines()]
    assert [line["row"] for line in lines] == [0, 1, 2]
    assert len({(line["timestamp"], line["request_id"]) for line in lines}) == 1
    store = PredictionStore(url)
    assert (store.ingest(log_dir).new, store.count()) == (3, 3)
    with store.engine.begin() as connection:
        connection.execute(progress.delete())
    assert (store.ingest(log_dir).new, store.count()) == (0, 3)


def test_a_line_written_before_rows_had_a_place_is_still_read(log_dir: Path, url: str) -> None:
    recording.write(answers(1))
    line = json.loads(data_file(log_dir).read_text())
    del line[recording.ROW]
    data_file(log_dir).write_text(json.dumps(line) + "\n")
    report = PredictionStore(url).ingest(log_dir)
    assert (report.new, report.unreadable) == (1, [])


def test_a_row_no_backend_can_store_is_reported_and_the_rest_of_its_chunk_stored(log_dir: Path, url: str) -> None:
    """PostgreSQL refuses a NUL in text and a string over its column's length, and would roll the whole chunk back
    with it (and fail every later run on it): such a line is unreadable, said why, and its neighbours are stored."""
    good = answers(4)
    bad = [good[1] | {"symbol": "X" * 65}, good[2] | {"symbol": "NUL\x00"}, good[3] | {"horizon_days": "five"}]
    recording.write([good[0], *bad, good[3]])
    store = PredictionStore(url)
    report = store.ingest(log_dir)
    assert (report.lines, report.new) == (5, 2)
    reasons = [line.split(": ", 1)[1] for line in report.unreadable]
    assert reasons == ["symbol longer than 64 characters", "symbol holds a NUL character",
                       "horizon_days is not an integer"]  # fmt: skip
    assert store.ingest(log_dir).new == 0 and store.count() == 2


def test_the_logs_of_several_servers_are_ingested_from_their_folders(log_dir: Path, url: str) -> None:
    """One log path per replica (``<logs>/<pod>/``, as deploy/k8s gives them): the same file names, each stored."""
    recording.write(answers(2))
    for pod in ("pod-a", "pod-b"):
        copy = log_dir.parent / "replicas" / pod / recording.MONITOR / "data" / data_file(log_dir).name
        copy.parent.mkdir(parents=True)
        copy.write_text(data_file(log_dir).read_text().replace('"v1"', f'"{pod}"'))
    report = PredictionStore(url).ingest(log_dir.parent / "replicas")
    assert (report.files, report.new) == (2, 4)
    assert len(PredictionStore(url).rows(version="pod-b")) == 2


def test_a_line_cut_short_by_a_crash_waits_and_the_next_record_is_recovered(log_dir: Path, url: str) -> None:
    recording.write(answers(2))
    path = data_file(log_dir)
    whole = path.read_text().splitlines()[-1]
    with path.open("a") as handle:
        handle.write(whole[: len(whole) // 2])  # the crash: half a line, no newline
    store = PredictionStore(url)
    report = store.ingest(log_dir)
    assert (report.lines, report.new) == (2, 2)  # the half line is not a record yet
    with path.open("a") as handle:  # the restarted server appends its next record right after it
        handle.write(whole.replace('"version": "v1"', '"version": "v2"') + "\n")
        handle.write("not json at all\n")
    report = store.ingest(log_dir)
    assert report.new == 1 and store.rows(version="v2")
    assert len(report.unreadable) == 1 and "not JSON" in report.unreadable[0]


def test_ingestion_killed_midway_loses_and_repeats_nothing(log_dir: Path, url: str) -> None:
    recording.write(answers(1))  # the monitor's own line, then many more in its format
    path = data_file(log_dir)
    template = json.loads(path.read_text().splitlines()[0])
    with path.open("a") as handle:
        for i in range(60_000):
            handle.write(json.dumps(template | {"request_id": f"r{i}", "prediction": i}) + "\n")
    store = PredictionStore(url)
    code = f"import pathlib, monitoring.store as m; m.PredictionStore({url!r}).ingest(pathlib.Path({str(log_dir)!r}))"
    job = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 60
    while store.count() == 0 and time.monotonic() < deadline:  # the first chunk is committed
        time.sleep(0.01)
    job.send_signal(signal.SIGKILL)
    job.wait()
    stored = store.count()
    assert 0 < stored < 60_001, f"killed after {stored} rows: the test needs a kill midway"
    report = store.ingest(log_dir)
    assert store.count() == 60_001 and report.new == 60_001 - stored


def test_the_ingest_command_reports_what_it_stored(log_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    recording.write(answers(4))
    arguments = ["monitor", "ingest", "--logs", str(log_dir), "--database", f"sqlite:///{tmp_path / 's.sqlite'}"]
    first = CliRunner().invoke(app, arguments)
    assert first.exit_code == 0, first.output
    assert "4 answer(s) stored, 0 already stored; the store holds 4" in " ".join(first.output.split())
    again = CliRunner().invoke(app, arguments)
    assert "0 answer(s) stored" in " ".join(again.output.split()) and "holds 4" in again.output
