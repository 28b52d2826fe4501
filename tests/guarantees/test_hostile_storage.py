"""Odd and hostile values on the way to storage (issue 12, findings 1, 2, 3, 7, 8 and the low ones
on the storage side): no key is stored, no record is lost near a bad one, no tick stops.

The upstream is a MockTransport (the client's inner transport); the database is real, SQLite and
Postgres. The property test driving arbitrary strings through the same paths is
``test_hostile_storage_property.py``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import subprocess
import sys
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from dependencies import require
from smtp_server import SmtpServer
from sqlalchemy import select
from waiting import eventually

import monitor
from monitor.capture.fingerprint import key_id
from monitor.config import load_settings
from monitor.gateway.guard import QuotaGuard
from monitor.ledger.jobs import run_tick
from monitor.recording.recorder import InMemorySink, Recorder
from monitor.recording.spool import Spool, encode_record
from monitor.recording.sql_sink import SqlSink
from monitor.records import CallRecord
from monitor.store import engine as store_engine
from monitor.store.alerts import ledger_rows
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine, upgrade
from monitor.store.models import ApiCall

MakeRecord = Callable[..., CallRecord]

KEY = "ak_HostileKeyUnderTest_0123456789abcdefXY"
#: A key with no recognisable prefix: only knowing the call's own key finds it in a message.
PLAIN_KEY = "9f8e7d6c5b4a3210fedcba9876543210"
CHAT = "/openai/v1/chat/completions"


def forms(key: str) -> dict[str, str]:
    return {
        "raw": key,
        "base64": base64.b64encode(key.encode()).decode().rstrip("="),
        "url-encoded": urllib.parse.quote(key, safe=""),
        "middle part": key[3:-4],
    }


def assert_no_key(where: str, text: str, key: str = KEY) -> None:
    for name, form in forms(key).items():
        assert form not in text, f"the key ({name}) appears in {where}: {text!r}"


def wrapped(handler: Callable[[httpx.Request], httpx.Response], key: str = KEY) -> httpx.Client:
    return monitor.instrument(
        httpx.Client(
            base_url="http://upstream.test",
            transport=httpx.MockTransport(handler),
            headers={"authorization": f"Bearer {key}"},
        )
    )


def stored(url: str) -> list[ApiCall]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(ApiCall)).all())
    finally:
        engine.dispose()


# --- finding 1: the raw key never reaches error_message, the spool or a log line ----------


def test_1a_an_illegal_header_error_quoting_the_key_is_stored_without_it(
    memory_sink: InMemorySink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    def refuse(request: httpx.Request) -> httpx.Response:
        # What h11 raises for a key read from a file with its trailing newline.
        raise httpx.LocalProtocolError(f"Illegal header value b'Bearer {KEY}\\n'")

    with wrapped(refuse) as client, pytest.raises(httpx.LocalProtocolError):
        client.post(CHAT, json={"model": "LongCat-2.0", "messages": []})
    assert monitor.flush(timeout=10)
    [record] = memory_sink.records
    assert record.error_type == "connection"
    assert_no_key("the record", repr(record))
    assert_no_key("the log", caplog.text)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (KEY, f"Incorrect API key provided: {KEY}. You can find your API key at …"),
        (PLAIN_KEY, f"Incorrect API key provided: {PLAIN_KEY}"),
        (PLAIN_KEY, f"bad key {base64.b64encode(PLAIN_KEY.encode()).decode()}"),
        (KEY, "Incorrect API key provided: sk-proj-AnotherKeyEntirely1234567890"),
        (KEY, "header was Authorization: Bearer someOpaqueToken.abc.def"),
    ],
)
def test_1b_an_upstream_message_repeating_a_key_is_stored_without_it(
    memory_sink: InMemorySink, key: str, message: str
) -> None:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": key}}
    with wrapped(lambda request: httpx.Response(401, json=body), key) as client:
        assert client.post(CHAT, json={"model": "LongCat-2.0"}).status_code == 401
    assert monitor.flush(timeout=10)
    [record] = memory_sink.records
    assert record.error_type == "auth" and record.error_message
    assert_no_key("the record", repr(record), key)
    for other in ("sk-proj-AnotherKeyEntirely", "someOpaqueToken"):
        assert other not in repr(record)


# --- finding 2: one bad string loses nothing but itself ---------------------------------------


def poisoned(make: MakeRecord) -> list[CallRecord]:
    return [
        make(model="x\x00y"),
        make(labels={"team": "a\x00b"}),
        make(error_type="bad_request", error_code="e\x00", status_code=400),
        make(model="x\ud800y"),
    ]


def test_2_a_batch_with_poisoned_records_lands_every_other_record(
    database_url: str, tmp_path: Path, make_call_record: MakeRecord
) -> None:
    spool = Spool(tmp_path / "spool", 10_000_000)
    recorder = Recorder(SqlSink(database_url), spool=spool, batch_size=500, flush_interval_s=30)
    good = [make_call_record() for _ in range(200)]
    bad = poisoned(make_call_record)
    for i, record in enumerate(good):
        recorder.submit(record)
        if i % 50 == 25:
            recorder.submit(bad[i // 50])
    assert recorder.flush(timeout=60)
    stats = recorder.stats()
    recorder.shutdown(timeout=10)
    ids = [row.event_id for row in stored(database_url)]
    assert sorted(ids).count(good[0].event_id) == 1
    assert {r.event_id for r in good} <= set(ids) and len(ids) == len(set(ids))
    landed_bad = {r.event_id for r in bad} & set(ids)
    assert stats.quarantined == len(bad) - len(landed_bad) >= 1
    assert stats.lost == 0 and not spool.pending()
    quarantined = [json.loads(line) for line in spool.quarantine_path.read_bytes().splitlines()]
    assert {q["event_id"] for q in quarantined} == {r.event_id for r in bad} - landed_bad


class PickySink(InMemorySink):
    """Refuses, for its data, any batch holding a record whose model is ``refused``."""

    writes = 0  # attempts, refused ones included

    def write(self, batch: Sequence[CallRecord]) -> None:
        self.writes += 1
        if any(r.model == "refused" for r in batch):
            raise store_engine.DataRefusedError("the database refused a value")
        super().write(batch)


def test_2_the_spool_never_replays_a_record_it_cannot_write(
    tmp_path: Path, make_call_record: MakeRecord
) -> None:
    spool = Spool(tmp_path / "spool", 10_000_000)
    good = [make_call_record() for _ in range(20)]
    spool.append([*good[:10], make_call_record(model="refused"), *good[10:]])
    sink = PickySink()
    recorder = Recorder(sink, spool=spool, flush_interval_s=0.05, retry_interval_s=0.05)
    recorder.start()
    eventually(lambda: not spool.pending(), interval=0.05, what="the spool to be replayed")
    writes = sink.writes
    time.sleep(0.5)
    assert sink.writes == writes  # nothing is tried again
    recorder.shutdown(timeout=10)
    assert sorted(r.event_id for r in sink.records) == sorted(r.event_id for r in good)
    assert recorder.stats().quarantined == 1


def test_2_a_new_process_adopts_a_poisoned_spool_and_lands_it(
    database_url: str, tmp_path: Path, make_call_record: MakeRecord
) -> None:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    good = [make_call_record() for _ in range(50)]
    bad = poisoned(make_call_record)
    left = folder / "12345-deadbeef.jsonl"  # a process that crashed: no one holds its lock
    left.write_bytes(b"".join(encode_record(r) for r in [*good[:25], *bad, *good[25:]]))
    left.chmod(0o600)
    recorder = Recorder(SqlSink(database_url), spool=Spool(folder, 10_000_000))
    recorder.start()
    eventually(lambda: not left.exists(), interval=0.05, what="the adopted spool file to go")
    recorder.shutdown(timeout=10)
    rows = stored(database_url)
    ids = [row.event_id for row in rows]
    assert len(ids) == len(set(ids)) == len(good) + len(bad)  # cleaned on the way in
    for row in rows:
        assert "\x00" not in (row.model or "") + (row.error_code or "") + json.dumps(row.labels)
    assert not left.exists()


# --- finding 3: a huge model name stops nothing -------------------------------------------


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + (
        b"data: [DONE]\n\n"
    )


def test_3_a_huge_model_name_is_capped_and_the_rollup_keeps_going(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITOR_DATABASE_URL", database_url)
    huge = "m" * 6000
    stream = sse(
        [
            {"model": huge, "choices": [{"delta": {"content": "hi"}}]},
            {
                "model": huge,
                "choices": [],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            },
        ]
    )

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream, headers={"content-type": "text/event-stream"})

    with wrapped(answer) as client:
        body = {"model": huge, "stream": True, "stream_options": {"include_usage": True}}
        with client.stream("POST", CHAT, json=body) as response:
            response.read()
    assert monitor.flush(timeout=30)
    [row] = stored(database_url)
    assert row.model is not None and 0 < len(row.model) <= 200
    # A row an older version stored as it came: the tick still runs, today and later.
    engine = make_engine(database_url)
    try:
        old = CallRecord(
            datetime.now(UTC), "openai", "/" + "e" * 6000, model=huge, key_id=row.key_id,
            labels={"l" * 6000: "v"}, status_code=200, total_tokens=5,
        )  # fmt: skip
        with engine.begin() as conn:
            insert_calls(conn, [old])
        settings = load_settings(database_url=database_url)
        now = datetime.now(UTC)
        run_tick(engine, settings, now, smtp=lambda email: None)
        run_tick(engine, settings, now + timedelta(minutes=1), smtp=lambda email: None)
    finally:
        engine.dispose()


# --- finding 7: one odd alert blocks no other ---------------------------------------------


def test_7_an_odd_key_hint_blocks_no_alert_e_mail(
    database_url: str, smtp_server: SmtpServer
) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    now = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    hints = {key_id("ak_real_key_for_the_alert_4242"): "4242", key_id("odd"): "\x85\x0b\r\n"}
    try:
        with engine.begin() as conn:
            insert_calls(
                conn,
                [
                    CallRecord(
                        now - timedelta(minutes=5), "openai", CHAT, key_id=kid, key_hint=hint,
                        status_code=200, total_tokens=150, input_tokens=100, output_tokens=50,
                        usage_source="reported",
                    )
                    for kid, hint in hints.items()
                ],
            )  # fmt: skip
        settings = load_settings(
            database_url=database_url,
            smtp_host=smtp_server.host,
            smtp_port=smtp_server.port,
            default_quota=100,
            alert_to=("team@example.com",),
        )
        run_tick(engine, settings, now)
        with engine.connect() as conn:
            ledger = [
                (row.key_id, row.status, {d.status for d in row.deliveries})
                for row in ledger_rows(conn)
            ]
    finally:
        engine.dispose()
    real, odd = list(hints)
    assert any(key == real and sent == {"sent"} for key, _, sent in ledger)
    assert any("4242" in mail.subject for mail in smtp_server.received)
    odd_rows = [(status, sent) for key, status, sent in ledger if key == odd]
    assert any(status == "failed" or sent & {"sent", "failed"} for status, sent in odd_rows)
    assert all(status in ("routed", "failed", "skipped") for status, _ in odd_rows)


# --- finding 8: the spool is private, and adopts only what this user wrote ----------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_8_spool_files_and_folder_are_private(tmp_path: Path, make_call_record: MakeRecord) -> None:
    folder = tmp_path / "spool"
    spool = Spool(folder, 1_000_000)
    spool.append([make_call_record()])
    assert mode(folder) == 0o700
    assert {p.name: mode(p) for p in folder.iterdir()} == {p.name: 0o600 for p in folder.iterdir()}
    spool.close()


def test_8_a_spool_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "root, to give the folder to another user")
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(Exception, match="owned by"):
        Spool(folder, 1_000_000).append([])


def test_8_planted_files_are_not_adopted(
    tmp_path: Path, make_call_record: MakeRecord, sqlite_url: str
) -> None:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(encode_record(make_call_record(model="planted-by-link")))
    (folder / "1-linked.jsonl").symlink_to(secret)
    if os.geteuid() == 0:
        theirs = folder / "2-theirs.jsonl"
        theirs.write_bytes(encode_record(make_call_record(model="planted-by-other")))
        os.chown(theirs, 65534, 65534)
    os.mkfifo(folder / "3-fifo.jsonl")
    recorder = Recorder(SqlSink(sqlite_url), spool=Spool(folder, 1_000_000), flush_interval_s=0.05)
    recorder.start()
    time.sleep(1.0)
    recorder.shutdown(timeout=10)
    assert [row.model for row in stored(sqlite_url)] == []
    assert secret.read_bytes()  # the link's target is left alone


def test_8_a_new_sqlite_database_is_private(tmp_path: Path) -> None:
    db = tmp_path / "new" / "monitor.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    files = [p for p in db.parent.iterdir() if p.name.startswith("monitor.db")]
    assert files and all(mode(p) == 0o600 for p in files), {p.name: oct(mode(p)) for p in files}


# --- low: guard memory, a malformed database URL ------------------------------------------


async def test_low_the_guard_memory_is_bounded_while_no_rollup_runs(sqlite_url: str) -> None:
    start = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)  # 09:00 Beijing time
    settings = load_settings(database_url=sqlite_url, default_quota=20_000 * 10)
    guard = QuotaGuard(settings, clock=lambda: start + timedelta(hours=6))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200_000):
            guard.note(
                CallRecord(
                    start + timedelta(milliseconds=100 * i), "openai", CHAT,
                    key_id=f"k_{i % 10}", status_code=200, total_tokens=10,
                )
            )  # fmt: skip
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 3_000_000, f"{grown:,} bytes for 200k calls"
    await guard.check("k_1")  # reads today's (empty) rollup once
    began = time.perf_counter()
    refusal = await guard.check("k_1")
    assert time.perf_counter() - began < 0.02
    assert refusal is not None and refusal.used == 20_000 * 10  # every call counted
    guard.close()


def test_low_a_malformed_database_port_is_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MONITOR_DATABASE_URL": "postgresql://monitor@127.0.0.1:notaport/monitor",
    }
    result = subprocess.run(
        [sys.executable, "-c", "from monitor.cli import main; main()", "tick"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "MONITOR_DATABASE_URL" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_the_client_name_from_a_user_agent_is_cleaned_and_capped() -> None:
    from monitor.scrub import MAX_FIELD_CHARS, scrub_record

    record = CallRecord(
        started_at=datetime.now(UTC),
        api="openai",
        endpoint="/openai/v1/chat/completions",
        client="tool\x00 " + "x" * 5_000 + " sk-" + "A1b2" * 8,
    )
    cleaned = scrub_record(record).client
    assert cleaned is not None
    assert "\x00" not in cleaned and len(cleaned) <= MAX_FIELD_CHARS
