"""api_calls partitioned by UTC day on Postgres (SQLite: unchanged)

Postgres: the table is rebuilt as ``PARTITION BY RANGE (started_at)`` with one partition per UTC
day present (plus today and the next few days) and a default partition for anything else; the
rows are copied over and the old table dropped, in the migration's one transaction. A unique
constraint on a partitioned table must hold the partition key, so the primary key becomes
``(id, started_at)`` and the event id's uniqueness ``(event_id, started_at)``; a replayed record
has both the same, so inserts stay exactly-once. ``id`` keeps its sequence.

The DDL is written out here rather than imported from ``monitor`` so that this revision does the
same thing whatever later code looks like. The scheduler keeps creating partitions ahead and drops
old ones (``monitor.ledger.retention``).

Revision ID: 0004_partition_api_calls
Revises: 0003_alerts
Create Date: 2025-01-04
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from alembic import op
from sqlalchemy import Connection, text

revision: str = "0004_partition_api_calls"
down_revision: str | None = "0003_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Day partitions created beyond today, so writes after the upgrade need no scheduler yet.
DAYS_AHEAD = 7


def _index_and_constraint_ddl(table: str, *, partitioned: bool) -> list[str]:
    if partitioned:
        keys = [
            f"ALTER TABLE {table} ADD CONSTRAINT pk_api_calls PRIMARY KEY (id, started_at)",
            f"ALTER TABLE {table} ADD CONSTRAINT uq_api_calls_event_id_started_at "
            "UNIQUE (event_id, started_at)",
        ]
    else:
        keys = [
            f"ALTER TABLE {table} ADD CONSTRAINT pk_api_calls PRIMARY KEY (id)",
            f"ALTER TABLE {table} ADD CONSTRAINT uq_api_calls_event_id UNIQUE (event_id)",
        ]
    return [
        *keys,
        f"CREATE INDEX ix_api_calls_started_at ON {table} (started_at)",
        f"CREATE INDEX ix_api_calls_key_id_started_at ON {table} (key_id, started_at)",
    ]


def _set_aside(conn: Connection, new_name: str, constraints: Sequence[str]) -> str:
    """Rename ``api_calls`` and its named constraints/indexes; return its id sequence's name."""
    conn.execute(text(f"ALTER TABLE api_calls RENAME TO {new_name}"))
    for constraint in constraints:
        conn.execute(
            text(
                f"ALTER TABLE {new_name} RENAME CONSTRAINT {constraint} "
                f"TO {constraint}_{new_name.removeprefix('api_calls_')}"
            )
        )
    for index in ("ix_api_calls_started_at", "ix_api_calls_key_id_started_at"):
        conn.execute(
            text(f"ALTER INDEX {index} RENAME TO {index}_{new_name.removeprefix('api_calls_')}")
        )
    sequence = conn.execute(
        text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": new_name}
    ).scalar_one()
    if sequence is None:  # pragma: no cover - 0001 always made id a bigserial
        raise RuntimeError(f"{new_name}.id has no sequence")
    return str(sequence)


def _move_rows(conn: Connection, old: str, sequence: str) -> None:
    # The sequence now belongs to the new table, or dropping the old one would drop it too.
    conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY api_calls.id"))
    conn.execute(text(f"INSERT INTO api_calls SELECT * FROM {old}"))
    conn.execute(text(f"DROP TABLE {old}"))


def _day_partition(conn: Connection, day: date) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS api_calls_p{day:%Y%m%d} PARTITION OF api_calls "
            f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
        )
    )


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    old = "api_calls_unpartitioned"
    sequence = _set_aside(conn, old, ["pk_api_calls", "uq_api_calls_event_id"])
    conn.execute(
        text(
            f"CREATE TABLE api_calls (LIKE {old} INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (started_at)"
        )
    )
    for statement in _index_and_constraint_ddl("api_calls", partitioned=True):
        conn.execute(text(statement))
    conn.execute(text("CREATE TABLE api_calls_default PARTITION OF api_calls DEFAULT"))
    present = conn.execute(
        text(f"SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM {old}")
    ).scalars()
    today = datetime.now(UTC).date()
    ahead = {today + timedelta(days=n) for n in range(DAYS_AHEAD + 1)}
    for day in sorted(set(present) | ahead):
        _day_partition(conn, day)
    _move_rows(conn, old, sequence)


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    old = "api_calls_partitioned"
    sequence = _set_aside(conn, old, ["pk_api_calls", "uq_api_calls_event_id_started_at"])
    conn.execute(text(f"CREATE TABLE api_calls (LIKE {old} INCLUDING DEFAULTS)"))
    # Dropping the partitioned table drops its partitions with it.
    _move_rows(conn, old, sequence)
    for statement in _index_and_constraint_ddl("api_calls", partitioned=False):
        conn.execute(text(statement))
