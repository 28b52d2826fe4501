"""api_calls partitioned by day on Postgres (migration 0004), partitions made ahead, retention.

Retention runs on both databases: Postgres drops whole day partitions, SQLite deletes in batches;
on both the rollups, and so the dashboard's daily totals, stay as they were.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, inspect, select, text

from monitor.config import Settings, load_settings
from monitor.ledger import retention
from monitor.ledger.jobs import run_tick
from monitor.ledger.quota_day import quota_day
from monitor.ledger.retention import maintain_storage, retention_cutoff
from monitor.ledger.rollup import RETENTION_NAME, ROLLUP_NAME, run_rollup
from monitor.queries.filters import Filters
from monitor.queries.series import daily_key_tokens
from monitor.records import CallRecord
from monitor.store import partitions as parts
from monitor.store.calls import insert_calls
from monitor.store.engine import current_revision, downgrade, make_engine, upgrade
from monitor.store.models import ApiCall, RollupState
from monitor.store.watermarks import get_watermark

#: 2025-03-20 11:00 Beijing; the calls below span the ten quota days up to it.
NOW = datetime(2025, 3, 20, 3, 0, tzinfo=UTC)
KEYS = ("k_alpha", "k_bravo")


def call(at: datetime, key: str = "k_alpha", **fields: Any) -> CallRecord:
    values: dict[str, Any] = {
        "api": "openai",
        "endpoint": "/openai/v1/chat/completions",
        "key_id": key,
        "key_hint": key[-4:],
        "model": "LongCat-Flash-Chat",
        "status_code": 200,
        "latency_ms": 100.0,
        "input_tokens": 90,
        "output_tokens": 10,
        "total_tokens": 100,
    }
    values.update(fields)
    return CallRecord(started_at=at, **values)


def ten_days() -> list[CallRecord]:
    """Every 5 hours for ten days back from NOW, both keys; tokens vary by the hour."""
    records = []
    for hours in range(0, 240, 5):
        at = NOW - timedelta(hours=hours, minutes=7)
        for key in KEYS:
            records.append(call(at, key, total_tokens=100 + hours, input_tokens=hours))
    return records


def count(engine: Engine, where: Any = None) -> int:
    query = select(func.count()).select_from(ApiCall)
    if where is not None:
        query = query.where(where)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def stored(engine: Engine) -> set[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(ApiCall.id, ApiCall.event_id, ApiCall.started_at, ApiCall.total_tokens)
        )
        return {tuple(row) for row in rows}


def daily_totals(engine: Engine, settings: Settings) -> list[Any]:
    """What the dashboard's daily chart shows for the last 30 quota days."""
    filters = Filters.last_days(30, quota_day(NOW, settings.tz))
    with engine.connect() as conn:
        return daily_key_tokens(conn, filters, settings.tz, settings.default_quota)


def relkind(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                text("SELECT relkind FROM pg_class WHERE oid = 'api_calls'::regclass")
            ).scalar_one()
        )


def partition_names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return parts.partitions(conn)


# --- the migration --------------------------------------------------------------------------


def as_row(engine: Engine, record: CallRecord) -> dict[str, Any]:
    """A record as a row of the schema the database has now (columns added later left out)."""
    columns = {column["name"] for column in inspect(engine).get_columns("api_calls")}
    row = dataclasses.asdict(record) | {"host": "h"}
    return {name: value for name, value in row.items() if name in columns}


def test_0004_keeps_every_row_up_and_down(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    try:
        upgrade(engine, "0003_alerts")
        records = ten_days()
        rows = [as_row(engine, r) for r in records]
        with engine.begin() as conn:  # plain INSERTs: 0003's unique key is event_id alone
            conn.execute(insert(ApiCall.__table__), rows)
        before = stored(engine)
        assert len(before) == len(records)

        upgrade(engine, "0004_partition_api_calls")
        assert current_revision(engine) == "0004_partition_api_calls"
        assert stored(engine) == before
        with engine.begin() as conn:  # ids carry on from the same sequence
            conn.execute(insert(ApiCall.__table__), [as_row(engine, call(NOW))])
            newest = conn.execute(select(func.max(ApiCall.id))).scalar_one()
        assert newest == max(row[0] for row in before) + 1

        if engine.dialect.name == "postgresql":
            assert relkind(engine) == "p"
            names = partition_names(engine)
            days = {r.started_at.date() for r in records}
            assert {parts.partition_name(d) for d in days} <= set(names)
            assert parts.DEFAULT_PARTITION in names
            inspector = inspect(engine)
            assert inspector.get_pk_constraint("api_calls")["constrained_columns"] == [
                "id",
                "started_at",
            ]
            indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("api_calls")}
            assert indexes["ix_api_calls_started_at"] == ["started_at"]
            assert indexes["ix_api_calls_key_id_started_at"] == ["key_id", "started_at"]
            with engine.connect() as conn:  # each row sits in its own day's partition
                misplaced = conn.execute(
                    text(
                        "SELECT count(*) FROM api_calls WHERE tableoid::regclass::text <> "
                        "'api_calls_p' || to_char(started_at AT TIME ZONE 'UTC', 'YYYYMMDD')"
                    )
                ).scalar_one()
            assert misplaced == 0

        after_insert = stored(engine)
        downgrade(engine, "0003_alerts")
        assert stored(engine) == after_insert
        inspector = inspect(engine)
        assert inspector.get_pk_constraint("api_calls")["constrained_columns"] == ["id"]
        uniques = [u["column_names"] for u in inspector.get_unique_constraints("api_calls")]
        assert ["event_id"] in uniques
        if engine.dialect.name == "postgresql":
            assert relkind(engine) == "r"
            assert partition_names(engine) == []

        upgrade(engine)  # and up again
        assert stored(engine) == after_insert
    finally:
        engine.dispose()


# --- inserts --------------------------------------------------------------------------------


@pytest.fixture
def settings(database_url: str) -> Settings:
    return load_settings(database_url=database_url, retention_days=3)


def test_a_replayed_batch_lands_once_across_partitions(engine: Engine) -> None:
    batch = ten_days()
    for _ in range(3):
        with engine.begin() as conn:
            insert_calls(conn, batch)
    assert count(engine) == len(batch)
    # Far outside every day partition (the default one on Postgres): still exactly once.
    stray = [call(datetime(2031, 1, 1, tzinfo=UTC)), call(datetime(2001, 1, 1, tzinfo=UTC))]
    for _ in range(2):
        with engine.begin() as conn:
            insert_calls(conn, stray)
    assert count(engine) == len(batch) + 2


# --- partitions ahead -----------------------------------------------------------------------


def test_partitions_are_created_ahead_and_stray_rows_moved_in(postgres_url: str) -> None:
    settings = load_settings(database_url=postgres_url)
    engine = make_engine(postgres_url)
    try:
        later = datetime(2031, 6, 1, 12, tzinfo=UTC)
        assert not [n for n in partition_names(engine) if n.startswith("api_calls_p2031")]
        with engine.begin() as conn:  # no partition for that day yet: it lands in the default
            insert_calls(conn, [call(later), call(later + timedelta(days=1))])
        result = maintain_storage(engine, settings, later - timedelta(days=2))
        assert result.partitions_created == settings.partition_days_ahead + 1
        names = set(partition_names(engine))
        for n in range(settings.partition_days_ahead + 1):
            assert parts.partition_name(date(2031, 5, 30) + timedelta(days=n)) in names
        with engine.connect() as conn:
            homes = conn.execute(
                text("SELECT tableoid::regclass::text FROM api_calls ORDER BY started_at")
            ).scalars()
            assert list(homes) == ["api_calls_p20310601", "api_calls_p20310602"]
        again = maintain_storage(engine, settings, later - timedelta(days=2))
        assert again.partitions_created == 0
    finally:
        engine.dispose()


def test_sqlite_has_no_partitions_to_make(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        result = maintain_storage(engine, load_settings(database_url=sqlite_url), NOW)
        assert result == retention.StorageResult()
    finally:
        engine.dispose()


# --- retention ------------------------------------------------------------------------------


def test_retention_removes_old_calls_and_keeps_the_rollups(
    engine: Engine, settings: Settings
) -> None:
    records = ten_days()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # as the scheduler would have made them
            for day in sorted({r.started_at.date() for r in records}):
                parts.create_day_partition(conn, day)
        insert_calls(conn, records)
    run_rollup(engine, settings, NOW)
    totals = daily_totals(engine, settings)
    assert len(totals) == 2 * 11  # two keys, ten days back plus today

    result = maintain_storage(engine, settings, NOW)

    wanted = retention_cutoff(3, settings.tz, NOW)
    assert wanted == datetime(2025, 3, 16, 16, tzinfo=UTC)  # 2025-03-17 00:00 Beijing
    if engine.dialect.name == "postgresql":
        # Whole UTC days only: the partial day before the quota-day cut-off is kept.
        assert result.cutoff == datetime(2025, 3, 16, tzinfo=UTC)
        names = partition_names(engine)
        assert not [n for n in names if (d := parts.partition_day(n)) and d < date(2025, 3, 16)]
        assert parts.partition_name(date(2025, 3, 16)) in names
        assert result.partitions_dropped >= 6
        assert result.rows_deleted == 0
    else:
        assert result.cutoff == wanted
        assert result.partitions_dropped == 0
    cutoff = result.cutoff
    assert cutoff is not None
    gone = [r for r in records if r.started_at < cutoff]
    assert gone
    assert count(engine) == len(records) - len(gone)
    assert count(engine, ApiCall.started_at < cutoff) == 0
    if engine.dialect.name == "sqlite":
        assert result.rows_deleted == len(gone)

    with engine.connect() as conn:
        assert get_watermark(conn, RETENTION_NAME) == cutoff
    assert daily_totals(engine, settings) == totals

    # A call for a day past retention arrives late (a spool replayed days on), and the rollup
    # starts over from nothing: days past retention, rolled up when all their calls were there,
    # are kept rather than recomputed from what is left.
    old_day = NOW - timedelta(days=8)
    with engine.begin() as conn:
        insert_calls(conn, [call(old_day, total_tokens=5)])
        conn.execute(delete(RollupState).where(RollupState.name == ROLLUP_NAME))
    run_rollup(engine, settings, NOW + timedelta(minutes=1))
    assert daily_totals(engine, settings) == totals

    again = maintain_storage(engine, settings, NOW + timedelta(minutes=1))
    assert (again.partitions_dropped, again.rows_deleted) == (0, 1)  # the late one, if any
    assert daily_totals(engine, settings) == totals


def test_retention_waits_for_the_first_rollup(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        insert_calls(conn, ten_days())
    result = maintain_storage(engine, settings, NOW)
    assert result.cutoff is None
    assert count(engine) == len(ten_days())


def test_no_retention_keeps_everything(engine: Engine, database_url: str) -> None:
    keep_all = load_settings(database_url=database_url)
    assert keep_all.retention_days is None
    with engine.begin() as conn:
        insert_calls(conn, ten_days())
    run_rollup(engine, keep_all, NOW)
    result = maintain_storage(engine, keep_all, NOW)
    assert (result.partitions_dropped, result.rows_deleted, result.cutoff) == (0, 0, None)
    assert count(engine) == len(ten_days())


def test_sqlite_deletes_in_batches(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "DELETE_BATCH_ROWS", 10)
    monkeypatch.setattr(retention, "MAX_DELETE_BATCHES", 5)
    settings = load_settings(database_url=sqlite_url, retention_days=1)
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            insert_calls(conn, ten_days())
        run_rollup(engine, settings, NOW)
        old = count(engine, ApiCall.started_at < retention_cutoff(1, settings.tz, NOW))
        assert 50 < old < 100
        first = maintain_storage(engine, settings, NOW)
        assert first.rows_deleted == 50  # five batches of ten, the rest next time
        second = maintain_storage(engine, settings, NOW)
        assert first.rows_deleted + second.rows_deleted == old
        assert count(engine, ApiCall.started_at < retention_cutoff(1, settings.tz, NOW)) == 0
    finally:
        engine.dispose()


def test_the_tick_applies_retention(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        insert_calls(conn, ten_days())
    result = run_tick(engine, settings, NOW, smtp=lambda email: None)
    assert result.storage.cutoff is not None
    assert count(engine, ApiCall.started_at < result.storage.cutoff) == 0
    assert "storage:" in result.summary()
