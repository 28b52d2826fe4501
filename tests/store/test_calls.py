"""insert_calls on SQLite and Postgres: every field round-trips; a replayed batch lands once."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select, text

from monitor.records import UNSTORED_FIELDS, CallRecord
from monitor.store.calls import COLUMNS, COPY_TYPES, insert_calls
from monitor.store.engine import make_engine
from monitor.store.models import ApiCall

MakeRecord = Callable[..., CallRecord]


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(ApiCall)).scalar_one())


def test_every_field_round_trips(engine: Engine, make_call_record: MakeRecord) -> None:
    full = make_call_record(
        started_at=datetime(2025, 3, 1, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=8))),
        api="anthropic",
        endpoint="/anthropic/v1/messages",
        method="POST",
        key_hint="wxyz",
        model="LongCat-Flash-Thinking",
        stream=True,
        status_code=429,
        error_type="rate_limit",
        error_code="rate_limit_exceeded",
        error_message="slow down",
        retry_after_s=60.0,
        latency_ms=12.5,
        ttft_ms=3.25,
        input_tokens=100,
        output_tokens=20,
        total_tokens=120,
        cache_read_tokens=7,
        cache_write_tokens=3,
        reasoning_tokens=11,
        usage_source="estimated",
        attempt=2,
        request_id="req_123",
        client="claude-code 2.1.328",
        labels={"feature": "summarise", "user": "alice"},
        source="gateway",
    )
    bare = CallRecord(started_at=datetime(2025, 3, 2, tzinfo=UTC), api="other", endpoint="/x")
    with engine.begin() as conn:
        insert_calls(conn, [full, bare], host="host-a")

    with engine.connect() as conn:
        rows = conn.execute(select(ApiCall.__table__).order_by(ApiCall.id)).mappings().all()
    assert len(rows) == 2
    for record, row in zip([full, bare], rows, strict=True):
        expected = dataclasses.asdict(record)
        for unstored in UNSTORED_FIELDS:
            del expected[unstored]
        expected["started_at"] = record.started_at.astimezone(UTC)
        stored = {name: row[name] for name in expected}
        assert stored == expected
        assert stored["started_at"].tzinfo is not None
        assert stored["started_at"].utcoffset() == timedelta(0)
        assert row["host"] == "host-a"
    assert rows[0]["started_at"] == datetime(2025, 3, 1, 15, 59, 59, 123456, tzinfo=UTC)


def test_records_of_every_shape_in_one_batch_round_trip(
    engine: Engine, make_call_record: MakeRecord
) -> None:
    # On SQLite each row goes into the columns it holds, rows of one shape a statement at a
    # time: shapes interleaved, and more of them than one statement takes, must all land intact.
    shapes = [
        {},
        {"stream": True, "ttft_ms": 4.5, "cache_read_tokens": 0, "reasoning_tokens": 9},
        {
            "status_code": 429,
            "error_type": "rate_limit",
            "error_code": "rate_limit_exceeded",
            "retry_after_s": 60.0,
            "input_tokens": None,
            "output_tokens": None,
            "total_tokens": None,
            "usage_source": "none",
        },
        {"status_code": None, "error_type": "connection", "latency_ms": None, "key_id": None},
    ]
    batch = [make_call_record(**shapes[i % len(shapes)]) for i in range(300)]
    with engine.begin() as conn:
        insert_calls(conn, batch, host="host-a")
    with engine.connect() as conn:
        rows = conn.execute(select(ApiCall.__table__)).mappings().all()
    stored = {row["event_id"]: row for row in rows}
    assert len(stored) == len(batch)
    for record in batch:
        expected = dataclasses.asdict(record)
        for unstored in UNSTORED_FIELDS:
            del expected[unstored]
        expected["started_at"] = record.started_at.astimezone(UTC)
        row = stored[record.event_id]
        assert {name: row[name] for name in expected} == expected


def test_api_calls_columns_have_no_defaults(engine: Engine) -> None:
    # A value left out of an INSERT (the SQLite writer leaves NULLs out) must read as NULL.
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            defaults = conn.exec_driver_sql("SELECT dflt_value FROM pragma_table_info('api_calls')")
        else:
            defaults = conn.exec_driver_sql(
                "SELECT column_default FROM information_schema.columns "
                "WHERE table_name = 'api_calls' AND column_name <> 'id'"
            )
        assert [d for (d,) in defaults if d is not None] == []


def test_replayed_batch_lands_once(engine: Engine, make_call_record: MakeRecord) -> None:
    batch = [make_call_record() for _ in range(50)]
    with engine.begin() as conn:
        insert_calls(conn, batch)
    with engine.begin() as conn:
        insert_calls(conn, batch)
    with engine.begin() as conn:  # a batch that overlaps the stored one
        insert_calls(conn, [*batch[:10], make_call_record()])
    assert count(engine) == 51


def test_over_long_text_is_cut_not_refused(engine: Engine, make_call_record: MakeRecord) -> None:
    record = make_call_record(error_message="x\x00" * 600, key_hint="0123456789")
    with engine.begin() as conn:
        insert_calls(conn, [record])
    with engine.connect() as conn:
        row = conn.execute(select(ApiCall.error_message, ApiCall.key_hint)).one()
    assert row.error_message == "x" * 500
    assert row.key_hint == "23456789"


def test_host_defaults_to_this_machine(engine: Engine, make_call_record: MakeRecord) -> None:
    import socket

    with engine.begin() as conn:
        insert_calls(conn, [make_call_record()])
        insert_calls(conn, [])
    with engine.connect() as conn:
        assert conn.execute(select(ApiCall.host)).scalar_one() == socket.gethostname()


def test_naive_times_are_taken_as_utc(engine: Engine, make_call_record: MakeRecord) -> None:
    with engine.begin() as conn:
        insert_calls(conn, [make_call_record(started_at=datetime(2025, 1, 1, 12, 0))])
    with engine.connect() as conn:
        stored = conn.execute(select(ApiCall.started_at)).scalar_one()
    assert stored == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_duplicates_within_a_batch_land_once(engine: Engine, make_call_record: MakeRecord) -> None:
    record = make_call_record()
    with engine.begin() as conn:
        insert_calls(conn, [record, make_call_record(), record])
    assert count(engine) == 2


def test_two_batches_in_one_transaction_land_once_each(
    engine: Engine, make_call_record: MakeRecord
) -> None:
    # On Postgres the second batch goes through the staging table the first one filled.
    first = [make_call_record() for _ in range(5)]
    second = [make_call_record() for _ in range(3)]
    with engine.begin() as conn:
        insert_calls(conn, first)
        insert_calls(conn, [*second, first[0]])
    assert count(engine) == 8


def test_a_rolled_back_batch_leaves_the_connection_usable(
    make_call_record: MakeRecord, database_url: str
) -> None:
    # One pooled connection, so the retry runs where the first (staging) attempt was undone.
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        batch = [make_call_record() for _ in range(20)]
        with pytest.raises(RuntimeError), engine.begin() as conn:
            insert_calls(conn, batch)
            raise RuntimeError("the database went away")
        assert count(engine) == 0
        for _ in range(2):  # the retry, then a replay of it
            with engine.begin() as conn:
                insert_calls(conn, batch)
        assert count(engine) == 20
    finally:
        engine.dispose()


def test_numbers_of_either_python_type_are_stored(
    engine: Engine, make_call_record: MakeRecord
) -> None:
    with engine.begin() as conn:
        insert_calls(conn, [make_call_record(latency_ms=850, ttft_ms=12, retry_after_s=3)])
    with engine.connect() as conn:
        row = conn.execute(select(ApiCall.latency_ms, ApiCall.ttft_ms, ApiCall.retry_after_s)).one()
    assert tuple(row) == (850.0, 12.0, 3.0)


def test_copy_types_match_the_migrated_schema(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            stored = dict(
                conn.execute(
                    text(
                        "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                        "WHERE attrelid = 'api_calls'::regclass AND attnum > 0 "
                        "AND NOT attisdropped"
                    )
                ).all()
            )
    finally:
        engine.dispose()
    # How each COPY type is sent in binary is how the column's type reads it.
    same_wire = {
        "character varying": "text",
        "jsonb": "jsonb",
        "timestamp with time zone": "timestamptz",
        "boolean": "bool",
        "integer": "int4",
        "double precision": "float8",
    }
    assert {c: same_wire[stored[c]] for c in COLUMNS} == COPY_TYPES
