"""Writing call records: one batched, idempotent INSERT per batch.

The rows are built here and go straight to the driver, because SQLAlchemy's per-row parameter
processing costs several times more than the database's own insert; the values are converted
exactly as :class:`monitor.store.models.ApiCall`'s column types would (UTC timestamps, JSON
labels), so reads through the models see the same data.

- SQLite: ``INSERT … ON CONFLICT (event_id) DO NOTHING`` of many rows a statement, each row
  into the columns it holds a value for.
- Postgres: binary ``COPY`` straight into ``api_calls``, under a savepoint in the caller's
  transaction. ``COPY`` is several times faster than ``executemany`` but cannot skip rows already
  stored: a batch holding one (a replay) fails on the unique key as a whole, is rolled back to the
  savepoint, and goes again through a session temporary table and ``INSERT … SELECT … ON
  CONFLICT (event_id, started_at) DO NOTHING``, so it still lands exactly once.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import socket
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from operator import attrgetter, is_not
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection

from monitor.records import UNSTORED_FIELDS, CallRecord
from monitor.store.models import ERROR_MESSAGE_CHARS, KEY_HINT_CHARS

#: The stored CallRecord fields, in order; each is a column of ``api_calls`` of the same name.
RECORD_FIELDS: Final = tuple(
    f.name for f in dataclasses.fields(CallRecord) if f.name not in UNSTORED_FIELDS
)
#: The fields ``driver_rows`` converts on the way, and the ones it passes as they are.
_CONVERTED: Final = ("started_at", "labels", "error_message", "key_hint", "stream")
_AS_THEY_ARE: Final = tuple(f for f in RECORD_FIELDS if f not in _CONVERTED)
#: The columns of a row ``driver_rows`` builds, in its order.
COLUMNS: Final = (*_AS_THEY_ARE, *_CONVERTED, "host")

_values_as_they_are = attrgetter(*_AS_THEY_ARE)

_COLUMN_LIST: Final = ", ".join(COLUMNS)
#: The unique key of a call. Postgres partitions ``api_calls`` by ``started_at``, and a unique
#: constraint on a partitioned table must hold the partition key; a replayed record has the same
#: ``event_id`` and ``started_at``, so either key skips it.
CONFLICT_TARGET: Final = {"sqlite": "event_id", "postgresql": "event_id, started_at"}

#: SQLite: ``INSERT … ON CONFLICT DO NOTHING``, so a replayed record is skipped, not an error.
SQLITE_INSERT: Final = (
    f"INSERT INTO api_calls ({_COLUMN_LIST}) VALUES ({', '.join(['?'] * len(COLUMNS))}) "
    f"ON CONFLICT ({CONFLICT_TARGET['sqlite']}) DO NOTHING"
)
#: The most rows in one SQLite INSERT. Statements come in powers of two up to this size, so
#: sqlite3's statement cache holds a handful of them per set of columns, not one per batch
#: length; a prepared statement of 64 rows takes about 160 KB.
SQLITE_ROWS_PER_STATEMENT: Final = 64
#: A row's values, compared one by one with ``None`` to find the columns it holds.
_ALL_NONE: Final = (None,) * len(COLUMNS)


@functools.lru_cache(maxsize=512)
def _sqlite_insert_rows(count: int, held: tuple[bool, ...]) -> str:
    """An INSERT of ``count`` rows into the columns flagged in ``held`` (the others stay NULL)."""
    row = f"({', '.join(['?'] * sum(held))})"
    return (
        f"INSERT INTO api_calls ({', '.join(itertools.compress(COLUMNS, held))}) "
        f"VALUES {', '.join([row] * count)} "
        f"ON CONFLICT ({CONFLICT_TARGET['sqlite']}) DO NOTHING"
    )


def _power_of_two_chunks(total: int) -> list[int]:
    """``total`` as sizes of at most SQLITE_ROWS_PER_STATEMENT, each a power of two."""
    sizes = []
    size = SQLITE_ROWS_PER_STATEMENT
    while total:
        while size > total:
            size //= 2
        sizes.append(size)
        total -= size
    return sizes


#: Postgres: each column's type in binary ``COPY`` (``varchar`` is sent as ``text``).
#: ``tests/store`` checks it against the migrated schema.
COPY_TYPES: Final = {
    **dict.fromkeys(COLUMNS, "text"),
    "started_at": "timestamptz",
    "stream": "bool",
    "labels": "jsonb",
    **dict.fromkeys(("status_code", "attempt"), "int4"),
    **dict.fromkeys(("retry_after_s", "latency_ms", "ttft_ms"), "float8"),
    **dict.fromkeys((f for f in COLUMNS if f.endswith("_tokens")), "int4"),
}
_COPY_CALLS: Final = f"COPY api_calls ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
#: Postgres: the session's staging table, for a batch that holds stored records: ``api_calls``'s
#: columns and types, no constraints. Created if missing in the caller's transaction, so a
#: rolled-back first batch cannot leave a connection believing it exists; emptied at every commit.
STAGING_TABLE: Final = "lcm_staged_calls"
_CREATE_STAGING: Final = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} ON COMMIT DELETE ROWS AS SELECT "
    + _COLUMN_LIST
    + " FROM api_calls WITH NO DATA"
)
_COPY_STAGING: Final = f"COPY {STAGING_TABLE} ({_COLUMN_LIST}) FROM STDIN (FORMAT BINARY)"
#: Rows an earlier batch of the same transaction staged are offered again and skipped as stored;
#: emptying the table each time (``DELETE … RETURNING``) costs more than that rare case.
_INSERT_STAGED: Final = (
    f"INSERT INTO api_calls ({_COLUMN_LIST}) SELECT {_COLUMN_LIST}"
    + f" FROM {STAGING_TABLE} ON CONFLICT ({CONFLICT_TARGET['postgresql']}) DO NOTHING"
)


def _sqlite_time(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores: naive UTC, always with microseconds (its
    own format string, which is also quicker than ``isoformat``)."""
    if value.tzinfo is not UTC and value.tzinfo is not None:
        value = value.astimezone(UTC)
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031 - twice as quick as f"…"
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def _postgres_time(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _postgres_labels(labels: dict[str, str]) -> Jsonb:
    # Encoded once here; ``dumps=str`` hands that text to psycopg's jsonb dumper unchanged.
    return Jsonb(json.dumps(labels), dumps=str)


#: Per dialect: how a timestamp, the labels and the stream flag are sent to the driver: labels
#: as JSON text to SQLite, as ``jsonb`` (already encoded) to Postgres; the flag as 0/1 to SQLite
#: (what SQLAlchemy's Boolean stores there; sqlite3 binds a ``bool`` only after a failed
#: adapter lookup, which costs about as much as binding three other values).
CONVERTERS: Final[
    dict[str, tuple[Callable[[datetime], Any], Callable[[Any], Any], Callable[[bool], Any]]]
] = {
    "sqlite": (_sqlite_time, json.dumps, int),
    "postgresql": (_postgres_time, _postgres_labels, bool),
}


def driver_rows(dialect: str, records: Sequence[CallRecord], host: str) -> list[tuple[Any, ...]]:
    """The rows ``insert_calls`` sends for ``records``, one value per column of ``COLUMNS``.

    Over-long ``error_message`` and ``key_hint`` values are cut short and NUL characters
    dropped from ``error_message`` (Postgres text cannot hold them).
    """
    try:
        time_of, labels_of, flag_of = CONVERTERS[dialect]
    except KeyError:
        raise NotImplementedError(f"no call-record insert for the {dialect} dialect") from None
    # Most records of a batch carry no labels or the same few sets: encode each set once.
    no_labels = labels_of({})
    encoded: dict[tuple[tuple[str, str], ...], Any] = {}
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    for record in records:
        labels = record.labels
        if labels:
            key = tuple(labels.items())
            text = encoded.get(key)
            if text is None:
                text = encoded[key] = labels_of(labels)
        else:
            text = no_labels
        message = record.error_message
        if message is not None and (len(message) > ERROR_MESSAGE_CHARS or "\x00" in message):
            message = message.replace("\x00", "")[:ERROR_MESSAGE_CHARS]
        hint = record.key_hint
        if hint is not None and len(hint) > KEY_HINT_CHARS:
            hint = hint[-KEY_HINT_CHARS:]
        as_they_are = _values_as_they_are(record)
        append(
            (
                *as_they_are,
                time_of(record.started_at),
                text,
                message,
                hint,
                flag_of(record.stream),
                host,
            )
        )
    return rows


def insert_calls(
    conn: Connection, records: Sequence[CallRecord], *, host: str | None = None
) -> None:
    """Insert ``records`` in one batch; records whose ``event_id`` is stored are skipped.

    Runs in the caller's transaction, so a batch lands whole or not at all, and replaying it
    lands each record exactly once. ``host`` defaults to this machine's name. Over-long
    ``error_message`` (over 500 characters) and ``key_hint`` values are cut short.

    >>> with engine.begin() as conn:  # doctest: +SKIP
    ...     insert_calls(conn, batch)
    """
    if not records:
        return
    dialect = conn.dialect.name
    host = socket.gethostname() if host is None else host
    if dialect != "sqlite":
        _copy_to_postgres(conn, driver_rows(dialect, records, host))
        return
    for statement, parameters in _sqlite_statements(records, host):
        conn.exec_driver_sql(statement, parameters)


def _sqlite_statements(
    records: Sequence[CallRecord], host: str
) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """The INSERTs that store ``records`` in SQLite, each with its parameters, built as they
    are asked for.

    Rows are grouped by the columns they hold, and a group goes out as one INSERT each time it
    has ``SQLITE_ROWS_PER_STATEMENT`` rows (the rest at the end, in power-of-two INSERTs), its
    values picked out of the rows in one pass. Only a statement's worth of rows is alive at a
    time, not the batch's: 1.10x the records a second of building every row first
    (``python -m bench recorder -- --baseline-tree``). A
    NULL is left out rather than bound: sqlite3 binds ``None`` only after a failed adapter
    lookup that costs more than binding the rest of the row, and a column left out of an INSERT
    is NULL (``api_calls`` has no column defaults; ``tests/store`` checks that). Many rows per
    statement because sqlite3 lets go of the GIL around every statement it steps: one row per
    statement (as ``executemany`` steps) beside an app thread busy in Python would wait out a
    thread switch interval (5 ms) a row, and the writer would fall hopelessly behind.
    """
    full = SQLITE_ROWS_PER_STATEMENT
    groups: dict[tuple[bool, ...], list[tuple[Any, ...]]] = {}
    for start in range(0, len(records), full):
        for row in driver_rows("sqlite", records[start : start + full], host):
            held = tuple(map(is_not, row, _ALL_NONE))
            group = groups.get(held)
            if group is None:
                group = groups[held] = []
            group.append(row)
            if len(group) == full:
                yield _sqlite_insert_rows(full, held), _held_values(group, held)
                group.clear()
    for held, group in groups.items():
        start = 0
        for size in _power_of_two_chunks(len(group)):
            yield _sqlite_insert_rows(size, held), _held_values(group[start : start + size], held)
            start += size


def _held_values(rows: list[tuple[Any, ...]], held: tuple[bool, ...]) -> tuple[Any, ...]:
    """The values of ``rows`` in the columns ``held`` flags, one row after another."""
    return tuple(itertools.compress(itertools.chain.from_iterable(rows), _mask(len(rows), held)))


@functools.lru_cache(maxsize=512)
def _mask(count: int, held: tuple[bool, ...]) -> tuple[bool, ...]:
    return held * count


def _copy_to_postgres(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    # SQLAlchemy has begun the transaction on this connection; the driver's cursors join it.
    driver = conn.connection.driver_connection
    if not isinstance(driver, psycopg.Connection):
        raise NotImplementedError(
            f"call records are written to Postgres through psycopg 3, not {driver!r}"
        )
    types = [COPY_TYPES[c] for c in COLUMNS]
    try:
        with conn.begin_nested(), driver.cursor() as cursor:
            _copy(cursor, _COPY_CALLS, types, rows)
    except psycopg.errors.UniqueViolation:  # some of these records are stored already
        with driver.cursor() as cursor:
            cursor.execute(_CREATE_STAGING)
            _copy(cursor, _COPY_STAGING, types, rows)
            cursor.execute(_INSERT_STAGED)


def _copy(
    cursor: psycopg.Cursor[Any], statement: str, types: list[str], rows: list[tuple[Any, ...]]
) -> None:
    with cursor.copy(statement) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
