"""The recorder: queue, background writer, flush, drops, failures, fork, and the SQL sink."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, select
from waiting import eventually

import monitor
import monitor.recording.sql_sink as sql_sink_module
from monitor.recording.recorder import (
    InMemorySink,
    Recorder,
    SqlSink,
    get_recorder,
    set_recorder,
)
from monitor.records import CallRecord
from monitor.store.engine import make_engine
from monitor.store.models import ApiCall

MakeRecord = Callable[..., CallRecord]


class BlockingSink(InMemorySink):
    """A sink that holds the writer until released (a database that has stopped answering)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.records: list[CallRecord] = []

    def write(self, batch: Sequence[CallRecord]) -> None:
        self.entered.set()
        self.release.wait(30)
        self.records.extend(batch)


class FailingSink(InMemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def write(self, batch: Sequence[CallRecord]) -> None:
        self.calls += 1
        raise ConnectionError("database is down")


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    """Recorders made by a test, shut down after it."""
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.shutdown(timeout=10)


def count_rows(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ApiCall)).scalar_one())
    finally:
        engine.dispose()


def monitor_logs(caplog: pytest.LogCaptureFixture, needle: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "monitor" and needle in r.getMessage()]


def test_flush_writes_everything_in_batches(
    recorders: list[Recorder], make_call_record: MakeRecord
) -> None:
    sink = InMemorySink()
    recorder = Recorder(sink, batch_size=100, flush_interval_s=60)
    recorders.append(recorder)
    records = [make_call_record() for _ in range(1050)]
    for record in records:
        recorder.submit(record)
    assert recorder.flush(timeout=10)
    assert sink.records == records
    assert sink.batches >= 11  # never more than batch_size at once
    stats = recorder.stats()
    assert (stats.submitted, stats.written, stats.dropped, stats.queued) == (1050, 1050, 0, 0)


def test_writer_wakes_on_interval_without_flush(
    recorders: list[Recorder], make_call_record: MakeRecord
) -> None:
    sink = InMemorySink()
    recorder = Recorder(sink, batch_size=100, flush_interval_s=0.05)
    recorders.append(recorder)
    recorder.submit(make_call_record())
    eventually(lambda: sink.records, what="the writer to wake")
    assert len(sink.records) == 1


def test_full_queue_drops_counts_and_never_blocks(
    recorders: list[Recorder], make_call_record: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    sink = BlockingSink()
    recorder = Recorder(sink, max_queue=100, batch_size=10, flush_interval_s=0.01)
    recorders.append(recorder)
    recorder.submit(make_call_record())
    assert sink.entered.wait(5)  # the writer is now stuck inside the sink

    records = [make_call_record() for _ in range(1000)]
    slowest = 0.0
    for record in records:
        started = time.perf_counter()
        recorder.submit(record)
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 0.05

    stats = recorder.stats()
    assert stats.dropped == 900
    assert stats.submitted == 101
    assert len(monitor_logs(caplog, "queue of 100 records is full")) == 1

    sink.release.set()
    assert recorder.flush(timeout=10)
    assert len(sink.records) == 101


def test_submit_is_cheap(recorders: list[Recorder], make_call_record: MakeRecord) -> None:
    recorder = Recorder(InMemorySink(), max_queue=50_000, batch_size=50_000, flush_interval_s=60)
    recorders.append(recorder)
    records = [make_call_record() for _ in range(20_000)]
    started = time.perf_counter()
    for record in records:
        recorder.submit(record)
    per_call = (time.perf_counter() - started) / len(records)
    assert per_call < 50e-6  # a few microseconds normally; generous for loaded CI machines


def test_failing_sink_is_logged_once_and_counted(
    recorders: list[Recorder], make_call_record: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    sink = FailingSink()
    recorder = Recorder(sink, batch_size=10, flush_interval_s=60)
    recorders.append(recorder)
    for _ in range(5):
        for _ in range(10):
            recorder.submit(make_call_record())
        assert recorder.flush(timeout=10) is False  # handled, but not written
    assert sink.calls == 5
    assert len(monitor_logs(caplog, "database is down")) == 1
    stats = recorder.stats()
    assert (stats.written, stats.failed, stats.lost) == (0, 50, 50)


def test_shutdown_writes_what_is_queued_and_is_idempotent(
    make_call_record: MakeRecord,
) -> None:
    sink = InMemorySink()
    recorder = Recorder(sink, batch_size=1000, flush_interval_s=60)
    for _ in range(10):
        recorder.submit(make_call_record())
    assert recorder.shutdown(timeout=10)
    assert len(sink.records) == 10
    assert recorder.shutdown(timeout=10)
    recorder.submit(make_call_record())  # after shutdown: dropped and counted, no error
    assert recorder.stats().dropped == 1
    assert recorder.flush(timeout=1)


def test_flush_on_an_unused_recorder(recorders: list[Recorder]) -> None:
    recorder = Recorder(InMemorySink())
    recorders.append(recorder)
    assert recorder.flush(timeout=1)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_queue must be greater than 0"):
        Recorder(InMemorySink(), max_queue=0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_writes_only_its_own_records(
    sqlite_url: str, recorders: list[Recorder], make_call_record: MakeRecord
) -> None:
    recorder = Recorder(SqlSink(sqlite_url), batch_size=1000, flush_interval_s=60)
    recorders.append(recorder)
    recorder.submit(make_call_record(source="parent-written"))
    assert recorder.flush(timeout=30)  # the writer thread and the engine exist before the fork
    for _ in range(30):
        recorder.submit(make_call_record(source="parent"))  # queued, not yet written

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        status = 1
        try:
            for _ in range(7):
                recorder.submit(make_call_record(source="child"))
            ok = recorder.flush(timeout=30)
            stats = recorder.stats()
            status = 0 if ok and stats.written == 7 and stats.submitted == 7 else 3
        finally:
            os._exit(status)

    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert recorder.flush(timeout=30)
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(ApiCall.source, func.count()).group_by(ApiCall.source)).all()
    finally:
        engine.dispose()
    assert dict(rows) == {"parent-written": 1, "parent": 30, "child": 7}


def test_sql_sink_writes_to_the_database(
    database_url: str, recorders: list[Recorder], make_call_record: MakeRecord
) -> None:
    recorder = Recorder(SqlSink(database_url), batch_size=100, flush_interval_s=60)
    recorders.append(recorder)
    for _ in range(250):
        recorder.submit(make_call_record())
    assert recorder.flush(timeout=30)
    assert count_rows(database_url) == 250


def _database_file_bytes(sqlite_url: str) -> int:
    """The size of the database file itself (what has been checkpointed out of the WAL)."""
    return Path(sqlite_url.removeprefix("sqlite:///")).stat().st_size


def test_sqlite_sink_checkpoints_when_idle_not_in_a_burst(
    sqlite_url: str, make_call_record: MakeRecord
) -> None:
    """A burst goes to the WAL only (more than SQLite's own 1,000-page trigger, which would
    copy pages into the database mid-burst); the copy is made once the writer is idle."""
    sink = SqlSink(sqlite_url)
    try:
        sink.write([make_call_record()])  # schema check and connection, before the burst
        before = _database_file_bytes(sqlite_url)
        message = "x" * 400  # ~12 MB of rows and index entries in all
        for _ in range(12):
            sink.write([make_call_record(error_message=message) for _ in range(2_000)])
        assert _database_file_bytes(sqlite_url) == before
        sink.idle()
        assert _database_file_bytes(sqlite_url) > before + 8_000_000
        assert count_rows(sqlite_url) == 24_001
    finally:
        sink.close()


def test_sqlite_sink_checkpoints_a_few_records_once_they_have_waited(
    sqlite_url: str, make_call_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A quiet app's few calls are not checkpointed at every idle moment (two syncs each
    time), nor left unsynced in the WAL for good."""
    sink = SqlSink(sqlite_url)
    try:
        before = _database_file_bytes(sqlite_url)
        sink.write([make_call_record(error_message="x" * 400) for _ in range(300)])
        sink.idle()
        assert _database_file_bytes(sqlite_url) == before
        monkeypatch.setattr(sql_sink_module, "IDLE_CHECKPOINT_INTERVAL_S", 0.0)
        sink.idle()
        assert _database_file_bytes(sqlite_url) > before
    finally:
        sink.close()


def test_recorder_lets_the_sink_checkpoint_once_the_queue_is_empty(
    sqlite_url: str, recorders: list[Recorder], make_call_record: MakeRecord
) -> None:
    recorder = Recorder(SqlSink(sqlite_url), batch_size=500, flush_interval_s=0.02)
    recorders.append(recorder)
    before = _database_file_bytes(sqlite_url)
    for _ in range(3_000):
        recorder.submit(make_call_record(error_message="x" * 400))
    assert recorder.flush(timeout=30)
    eventually(
        lambda: _database_file_bytes(sqlite_url) >= before + 1_000_000,
        what="the WAL to be checkpointed into the database file",
    )
    assert count_rows(sqlite_url) == 3_000


def test_sqlite_default_database_upgrades_itself(
    recorders: list[Recorder], make_call_record: MakeRecord
) -> None:
    """The configured default (an SQLite file that does not exist yet) just works."""
    recorder = get_recorder()
    recorders.append(recorder)
    recorder.submit(make_call_record())
    assert monitor.flush(timeout=30)
    assert isinstance(recorder.sink, SqlSink)
    assert recorder.sink.url == os.environ["MONITOR_DATABASE_URL"]  # inside tmp_path
    assert count_rows(recorder.sink.url) == 1


def test_postgres_without_schema_drops_with_one_error(
    empty_postgres_url: str,
    recorders: list[Recorder],
    make_call_record: MakeRecord,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(SqlSink(empty_postgres_url), batch_size=10, flush_interval_s=60)
    recorders.append(recorder)
    for _ in range(3):
        for _ in range(10):
            recorder.submit(make_call_record())  # never raises into the app
        assert recorder.flush(timeout=30) is False
    logged = monitor_logs(caplog, "run `longcat-monitor db upgrade`")
    assert len(logged) == 1
    assert "has schema revision none" in logged[0].getMessage()
    stats = recorder.stats()
    assert (stats.written, stats.failed) == (0, 30)
    recorder.shutdown(timeout=10)


def test_config_error_gives_a_recorder_that_counts_drops(
    monkeypatch: pytest.MonkeyPatch, make_call_record: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    from monitor.config import get_settings

    monkeypatch.setenv("MONITOR_DATABASE_URL", "mysql://nope")
    get_settings.cache_clear()
    recorder = get_recorder()
    recorder.submit(make_call_record())
    assert recorder.stats().dropped == 1
    assert len(monitor_logs(caplog, "MONITOR_DATABASE_URL")) == 1
    assert get_recorder() is recorder


def test_set_recorder_replaces_the_default(make_call_record: MakeRecord) -> None:
    sink = InMemorySink()
    mine = Recorder(sink, flush_interval_s=60)
    set_recorder(mine)
    get_recorder().submit(make_call_record())
    assert monitor.flush(timeout=10)
    assert len(sink.records) == 1
