"""The spool: the format, the size cap, corrupt lines, abandoned files, and the recorder's use."""

from __future__ import annotations

import dataclasses
import fcntl
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from test_recorder import count_rows
from waiting import eventually

from monitor.config import DEFAULT_SPOOL_MAX_BYTES, ConfigError, default_spool_dir, load_settings
from monitor.recording.recorder import InMemorySink, Recorder
from monitor.recording.spool import (
    CorruptSpoolLineError,
    Spool,
    count_lines,
    decode_record,
    encode_record,
    spool_files,
)
from monitor.recording.sql_sink import SqlSink
from monitor.records import CallRecord

MakeRecord = Callable[..., CallRecord]


class SwitchableSink(InMemorySink):
    """Fails while ``down`` is set (a database that stopped answering), else keeps records."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.records: list[CallRecord] = []

    def write(self, batch: Sequence[CallRecord]) -> None:
        if self.down:
            raise ConnectionError("connection refused")
        self.records.extend(batch)


def test_a_record_survives_the_round_trip(make_call_record: MakeRecord) -> None:
    record = make_call_record(labels={"team": "search"}, error_message="ünïcode")
    assert decode_record(encode_record(record)) == record


def test_a_record_with_a_trace_parent_is_spooled_without_it(make_call_record: MakeRecord) -> None:
    # The app's span is for the live export only: a replayed record is exported without a parent.
    record = make_call_record(trace_parent=(1 << 100, 1 << 40, 1))
    line = encode_record(record)
    assert b"trace_parent" not in line
    assert decode_record(line) == dataclasses.replace(record, trace_parent=None)


def test_a_record_read_back_is_scrubbed(make_call_record: MakeRecord) -> None:
    record = make_call_record(error_message="ünïcode \x00", model="x\ud800")
    back = decode_record(encode_record(record))
    assert (back.error_message, back.model) == ("ünïcode ", "x\ufffd")


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"{",
        b"[]",
        b'{"api": "openai"}',
        b"\xff\xfe",
        b'{"started_at": "yesterday", "api": "openai", "endpoint": "/", "event_id": "x"}',
        # each field is checked: a type, a range, a choice, an id that is not one
        b'{"started_at": "2026-01-01T00:00:00+00:00", "api": "openai", "endpoint": "/", '
        b'"event_id": "x", "input_tokens": "12"}',
        b'{"started_at": "2026-01-01T00:00:00+00:00", "api": "openai", "endpoint": "/", '
        b'"event_id": "x", "total_tokens": 99999999999}',
        b'{"started_at": "2026-01-01T00:00:00+00:00", "api": "smtp", "endpoint": "/", '
        b'"event_id": "x"}',
        b'{"started_at": "2026-01-01T00:00:00+00:00", "api": "openai", "endpoint": "/", '
        b'"event_id": "x/../y"}',
        b'{"started_at": "2026-01-01T00:00:00+00:00", "api": "openai", "endpoint": "/", '
        b'"event_id": "x", "labels": {"a": 1}}',
    ],
)
def test_lines_that_are_not_records_are_rejected(line: bytes) -> None:
    with pytest.raises(CorruptSpoolLineError):
        decode_record(line)


def test_append_then_replay_writes_everything_once(
    tmp_path: Path, make_call_record: MakeRecord
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    records = [make_call_record() for _ in range(25)]
    spool.append(records[:10])
    spool.append(records[10:])
    assert count_lines(spool.path) == 25
    sink = InMemorySink()
    assert spool.replay(sink.write, batch_size=7)
    assert sink.records == records
    assert sink.batches == 4
    assert spool.size == 0 and spool.replayed == 25
    spool.close()
    assert spool_files(tmp_path / "spool") == []


def test_past_the_cap_the_oldest_are_dropped_and_counted(
    tmp_path: Path, make_call_record: MakeRecord
) -> None:
    line = len(encode_record(make_call_record()))
    spool = Spool(tmp_path, max_bytes=line * 10 + line // 2)
    records = [make_call_record() for _ in range(25)]
    for record in records:
        spool.append([record])
        assert spool.size <= spool.max_bytes
    assert spool.dropped == 15
    sink = InMemorySink()
    spool.replay(sink.write, batch_size=100)
    assert sink.records == records[15:]


def test_a_failed_replay_keeps_what_was_not_written(
    tmp_path: Path, make_call_record: MakeRecord
) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    records = [make_call_record() for _ in range(10)]
    spool.append(records)
    written: list[CallRecord] = []

    def flaky(batch: Sequence[CallRecord]) -> None:
        if written:
            raise ConnectionError("gone again")
        written.extend(batch)

    with pytest.raises(ConnectionError):
        spool.replay(flaky, batch_size=4)
    sink = InMemorySink()
    assert spool.replay(sink.write, batch_size=4)
    assert written + sink.records == records


def test_corrupt_lines_are_set_aside_with_one_clear_message(
    tmp_path: Path, make_call_record: MakeRecord, caplog: pytest.LogCaptureFixture
) -> None:
    left = tmp_path / "123-abcd.jsonl"
    good = [make_call_record() for _ in range(3)]
    left.write_bytes(
        encode_record(good[0])
        + b"garbage\n"
        + encode_record(good[1])
        + b"\x00\xff\n"
        + encode_record(good[2])
        + encode_record(make_call_record())[:40]  # cut by a crash
    )
    spool = Spool(tmp_path, max_bytes=10_000_000)
    sink = InMemorySink()
    assert spool.replay(sink.write, batch_size=100)
    assert sink.records == good
    assert spool.corrupt == 3
    assert not left.exists()
    corrupt = tmp_path / "123-abcd.jsonl.corrupt"
    assert count_lines(corrupt) == 3
    messages = [r.getMessage() for r in caplog.records if "not a call record" in r.getMessage()]
    assert len(messages) == 1
    assert str(left) in messages[0] and str(corrupt) in messages[0]


def test_a_live_process_spool_is_left_alone(tmp_path: Path, make_call_record: MakeRecord) -> None:
    other = Spool(tmp_path, max_bytes=10_000_000)
    other.append([make_call_record()])  # holds its lock, as a running process does
    mine = Spool(tmp_path, max_bytes=10_000_000)
    sink = InMemorySink()
    assert mine.replay(sink.write, batch_size=10)
    assert sink.records == []
    # A lock taken in another open file description is what a live process looks like.
    fd = os.open(other.path.with_suffix(".lock"), os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    other.close()  # the process exits with records unwritten: the file stays, unlocked
    assert other.path.exists()
    assert mine.replay(sink.write, batch_size=10)
    assert len(sink.records) == 1
    assert spool_files(tmp_path) == []


def test_recorder_spools_while_down_and_replays_exactly_once(
    tmp_path: Path, sqlite_url: str, make_call_record: MakeRecord
) -> None:
    class Outage(SqlSink):
        down = True

        def write(self, batch: Sequence[CallRecord]) -> None:
            if self.down:
                raise ConnectionError("database is down")
            super().write(batch)

    sink = Outage(sqlite_url)
    spool = Spool(tmp_path / "spool", max_bytes=10_000_000)
    recorder = Recorder(
        sink, batch_size=50, flush_interval_s=0.02, spool=spool, retry_interval_s=0.2
    )
    try:
        records = [make_call_record() for _ in range(300)]
        for record in records:
            recorder.submit(record)
        assert recorder.flush(timeout=10)  # durable: in the spool
        stats = recorder.stats()
        assert (stats.spooled, stats.lost, stats.written) == (300, 0, 0)
        sink.down = False
        for _ in range(20):
            recorder.submit(make_call_record())
        # Those 20 may go to the spool too (the database is rested for retry_interval_s).
        eventually(lambda: recorder.stats().replayed >= 300 and spool.size == 0)
        assert recorder.flush(timeout=10)
        assert count_rows(sqlite_url) == 320
    finally:
        recorder.shutdown(timeout=10)
    # The same records again, left by a process that died before truncating its file: a new
    # recorder adopts the file on start, and nothing is added twice.
    left = Spool(tmp_path / "spool", max_bytes=10_000_000)
    left.append(records)
    left.close()
    again = Recorder(
        SqlSink(sqlite_url), flush_interval_s=0.02, spool=Spool(spool.directory, 10**7)
    )
    try:
        again.start()
        # The count goes up as each batch is written; the file goes once all of it is.
        eventually(lambda: again.stats().replayed == 300 and spool_files(spool.directory) == [])
        assert count_rows(sqlite_url) == 320
    finally:
        again.shutdown(timeout=10)


def test_default_spool_dir_is_per_database(tmp_path: Path) -> None:
    assert default_spool_dir("sqlite:////x/m.db", tmp_path) == Path("/x/m.db.spool")
    a = default_spool_dir("postgresql://u:secret@db1:5432/mon", tmp_path)
    b = default_spool_dir("postgresql://u@db2:5432/mon", tmp_path)
    assert a != b and a.parent == tmp_path / "spool"
    assert "secret" not in str(a)
    assert default_spool_dir("postgresql://u:other@db1:5432/mon", tmp_path) == a


def test_spool_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.spool_max_bytes == DEFAULT_SPOOL_MAX_BYTES
    assert settings.spool_dir.name == "monitor.db.spool"
    monkeypatch.setenv("MONITOR_SPOOL_PATH", str(tmp_path / "s"))
    assert load_settings().spool_dir == tmp_path / "s"
    monkeypatch.setenv("MONITOR_SPOOL_MAX_BYTES", "lots")
    with pytest.raises(ConfigError, match="MONITOR_SPOOL_MAX_BYTES"):
        load_settings()
    monkeypatch.setenv("MONITOR_SPOOL_MAX_BYTES", "0")
    with pytest.raises(ConfigError, match=r"MONITOR_SPOOL_MAX_BYTES: .*greater than 0"):
        load_settings()
    monkeypatch.delenv("MONITOR_SPOOL_MAX_BYTES")
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("MONITOR_SPOOL_PATH", str(tmp_path / "f"))
    with pytest.raises(ConfigError, match=r"MONITOR_SPOOL_PATH: .* is a file"):
        load_settings()
