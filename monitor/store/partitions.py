"""Day partitions of ``api_calls`` on Postgres, and deleting old calls on either database.

Since migration ``0004_partition_api_calls``, Postgres keeps ``api_calls`` as a table partitioned
by ``started_at``: one partition per UTC day, named ``api_calls_pYYYYMMDD``, and a default
partition, ``api_calls_default``, for calls outside every day partition. SQLite keeps one table.
:mod:`monitor.ledger.retention` decides which days to create and drop; the SQL is here.

>>> with engine.begin() as conn:  # doctest: +SKIP
...     create_day_partition(conn, date(2026, 11, 26))
True
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from sqlalchemy import Connection, delete, select, text

from monitor.store.models import ApiCall

PARENT: Final = "api_calls"
DEFAULT_PARTITION: Final = "api_calls_default"
PARTITION_PATTERN: Final = re.compile(r"api_calls_p(\d{8})")
#: How long partition DDL waits for the parent's lock before giving up until the next run, so a
#: long query on ``api_calls`` never stalls the writers queued behind the DDL.
LOCK_TIMEOUT: Final = "5s"


def partition_name(day: date) -> str:
    """The partition holding UTC day ``day``.

    >>> partition_name(date(2026, 11, 26))
    'api_calls_p20261126'
    """
    return f"api_calls_p{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    """The UTC day a partition holds; ``None`` for the default partition or any other table."""
    match = PARTITION_PATTERN.fullmatch(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%d").date()


def day_range(day: date) -> tuple[datetime, datetime]:
    """The UTC ``[start, end)`` of ``day``."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def is_partitioned(conn: Connection) -> bool:
    """Whether ``api_calls`` is a partitioned table (Postgres at 0004 or later)."""
    if conn.dialect.name != "postgresql":
        return False
    kind = conn.execute(
        text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:parent)"), {"parent": PARENT}
    ).scalar_one_or_none()
    return kind == "p"


def partitions(conn: Connection) -> list[str]:
    """The names of ``api_calls``'s partitions (the default one included), sorted."""
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = to_regclass(:parent) ORDER BY c.relname"
        ),
        {"parent": PARENT},
    )
    return [str(name) for name in rows.scalars()]


def create_day_partition(conn: Connection, day: date) -> bool:
    """Create the partition of UTC day ``day`` if it is missing; true if it was created.

    Calls of that day already sitting in the default partition (written before the partition
    existed) are moved into the new one first, as Postgres requires.
    """
    name = partition_name(day)
    if conn.execute(text("SELECT to_regclass(:name)"), {"name": name}).scalar() is not None:
        return False
    start, end = day_range(day)
    bounds = f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    stray = conn.execute(
        text(
            f"SELECT EXISTS (SELECT 1 FROM {DEFAULT_PARTITION} "
            "WHERE started_at >= :start AND started_at < :end)"
        ),
        {"start": start, "end": end},
    ).scalar()
    if not stray:
        conn.execute(text(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {PARENT} {bounds}"))
        return True
    conn.execute(text(f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS)"))
    conn.execute(
        text(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} "
            "WHERE started_at >= :start AND started_at < :end RETURNING *) "
            f"INSERT INTO {name} SELECT * FROM moved"
        ),
        {"start": start, "end": end},
    )
    conn.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {name} {bounds}"))
    return True


def drop_partition(conn: Connection, name: str) -> None:
    """Detach partition ``name`` from ``api_calls`` and drop it, with every call in it."""
    if partition_day(name) is None:
        raise ValueError(f"{name!r} is not a day partition of {PARENT}")
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {name}"))
    conn.execute(text(f"DROP TABLE {name}"))


def delete_calls_before(conn: Connection, cutoff: datetime, limit: int) -> int:
    """Delete at most ``limit`` calls started before ``cutoff``; return how many went."""
    oldest = (
        select(ApiCall.id).where(ApiCall.started_at < cutoff).order_by(ApiCall.started_at)
    ).limit(limit)
    # The repeated started_at test lets Postgres prune to the partitions that can hold such rows.
    result = conn.execute(
        delete(ApiCall).where(ApiCall.id.in_(oldest), ApiCall.started_at < cutoff)
    )
    return result.rowcount
