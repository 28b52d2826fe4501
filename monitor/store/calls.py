"""Writing call records: one batched, idempotent INSERT per batch.

The INSERT goes straight to the driver's ``executemany`` with rows built here, because
SQLAlchemy's per-row parameter processing costs several times more than SQLite's own insert;
the values are converted exactly as :class:`monitor.store.models.ApiCall`'s column types would
(UTC timestamps, JSON labels), so reads through the models see the same data.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any, Final

from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from monitor.records import CallRecord
from monitor.store.models import ERROR_MESSAGE_CHARS, KEY_HINT_CHARS

#: The CallRecord fields, in order; each is a column of ``api_calls`` of the same name.
RECORD_FIELDS: Final = tuple(f.name for f in dataclasses.fields(CallRecord))
COLUMNS: Final = (*RECORD_FIELDS, "host")

_values_of = attrgetter(*RECORD_FIELDS)
_STARTED_AT: Final = RECORD_FIELDS.index("started_at")
_LABELS: Final = RECORD_FIELDS.index("labels")
_ERROR_MESSAGE: Final = RECORD_FIELDS.index("error_message")
_KEY_HINT: Final = RECORD_FIELDS.index("key_hint")

#: ``INSERT … ON CONFLICT (…) DO NOTHING``: a replayed record is skipped, not an error.
_INSERT_SQL: Final = (
    f"INSERT INTO api_calls ({', '.join(COLUMNS)}) VALUES ({{placeholders}}) "
    "ON CONFLICT ({conflict}) DO NOTHING"
)
_PLACEHOLDER: Final = {"sqlite": "?", "postgresql": "%s"}
#: The unique key of a call. Postgres partitions ``api_calls`` by ``started_at``, and a unique
#: constraint on a partitioned table must hold the partition key; a replayed record has the same
#: ``event_id`` and ``started_at``, so either key skips it.
CONFLICT_TARGET: Final = {"sqlite": "event_id", "postgresql": "event_id, started_at"}


def _sqlite_time(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DATETIME stores (naive UTC, always with microseconds).
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds")


def _postgres_time(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_CONVERTERS: Final[dict[str, tuple[Callable[[datetime], Any], Callable[[Any], Any]]]] = {
    "sqlite": (_sqlite_time, json.dumps),
    "postgresql": (_postgres_time, Jsonb),
}


def insert_calls(
    conn: Connection, records: Sequence[CallRecord], *, host: str | None = None
) -> None:
    """Insert ``records`` with one executemany; records whose ``event_id`` is stored are skipped.

    Runs in the caller's transaction, so a batch lands whole or not at all, and replaying it
    lands each record exactly once. ``host`` defaults to this machine's name. Over-long
    ``error_message`` (over 500 characters) and ``key_hint`` values are cut short.

    >>> with engine.begin() as conn:  # doctest: +SKIP
    ...     insert_calls(conn, batch)
    """
    if not records:
        return
    dialect = conn.dialect.name
    try:
        time_of, labels_of = _CONVERTERS[dialect]
    except KeyError:
        raise NotImplementedError(f"no call-record insert for the {dialect} dialect") from None
    if host is None:
        host = socket.gethostname()
    rows = []
    for record in records:
        row = list(_values_of(record))
        row[_STARTED_AT] = time_of(row[_STARTED_AT])
        row[_LABELS] = labels_of(row[_LABELS])
        message = row[_ERROR_MESSAGE]
        if message is not None and (len(message) > ERROR_MESSAGE_CHARS or "\x00" in message):
            row[_ERROR_MESSAGE] = message.replace("\x00", "")[:ERROR_MESSAGE_CHARS]
        hint = row[_KEY_HINT]
        if hint is not None and len(hint) > KEY_HINT_CHARS:
            row[_KEY_HINT] = hint[-KEY_HINT_CHARS:]
        row.append(host)
        rows.append(tuple(row))
    placeholders = ", ".join([_PLACEHOLDER[dialect]] * len(COLUMNS))
    sql = _INSERT_SQL.format(placeholders=placeholders, conflict=CONFLICT_TARGET[dialect])
    conn.exec_driver_sql(sql, rows)
