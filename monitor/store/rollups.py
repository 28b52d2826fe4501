"""The rollup's SQL: hourly groups aggregated from ``api_calls``, days derived from hourly rows.

Everything heavy runs in the database as ``GROUP BY``: Python receives one row per group (tens of
thousands for a day of ten million calls), never a raw call.

- :func:`aggregate_calls` groups calls per ``(key, UTC hour, model, stream)`` (or per key, for a
  span of time) with token sums, exact minimum and maximum latency and TTFT, and their
  :mod:`monitor.ledger.histogram` bucket counts, in one scan (:mod:`monitor.store.grouping`).
- :func:`daily_from_hours` adds up a quota day's ``hourly_usage`` rows per key, histograms included,
  so a tick never rereads a day of raw calls; :func:`sum_rows` does the same for any span, and
  adds five-minute slices (:mod:`monitor.store.slices`) up into hours.
- :func:`write_hourly` / :func:`write_daily` upsert many rows at once (Postgres: through ``COPY``).

On Postgres the aggregation runs with JIT off, enough ``work_mem`` for hash aggregation and
sorting off (``SET LOCAL``: the transaction only; see :func:`prepare`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from typing import Any, Final, cast

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Table, bindparam, text
from sqlalchemy.exc import OperationalError

from monitor.ledger.histogram import BUCKETS
from monitor.ledger.quota_day import hour_start
from monitor.ledger.totals import HOUR, HourlyKey, Totals
from monitor.store.calls import CONVERTERS
from monitor.store.grouping import (
    bin_sql,
    bind_params,
    calls_window,
    grouped_calls_sql,
    instant,
    totals_of,
)
from monitor.store.models import (
    LATENCY_HISTOGRAM,
    SUMMED_FIGURES,
    TTFT_HISTOGRAM,
    DailyUsage,
    HourlyUsage,
    UTCDateTime,
)

#: ``work_mem`` for the aggregation on Postgres: a day's groups fit in a hash table.
POSTGRES_WORK_MEM: Final = "256MB"
#: Connections aggregating hours side by side in a full recompute (:func:`aggregate_hours`).
AGGREGATION_WORKERS: Final = 2
#: Transaction-level advisory lock held by a rollup run ("LCMR"), so two runs (a deposed leader
#: and the new one) take turns: the second one starts from what the first one wrote.
ROLLUP_LOCK_ID: Final = 0x4C434D52

hourly_usage: Final = cast(Table, HourlyUsage.__table__)

__all__ = [
    "aggregate_calls",
    "aggregate_hours",
    "count_calls_since",
    "daily_from_hours",
    "prepare",
    "sum_rows",
    "write_daily",
    "write_hourly",
]


def prepare(conn: Connection) -> None:
    """Set the session up for aggregation (call at the start of the rollup's transaction).

    On Postgres this waits for any other rollup run to commit. The planner estimates as many
    groups as calls for any expression of ``started_at`` (an hour, a slice), and would sort
    millions of rows on disk rather than hash a few thousand groups; sorting is turned off.
    The commit does not wait for its WAL to reach the disk: what a crash could lose is derived
    from ``api_calls`` again by the next run, and the waits were a good part of a tick.
    """
    if conn.dialect.name == "postgresql":
        driver = conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        # One round trip (no parameters: the statements go as one simple query).
        driver.execute(
            f"SELECT pg_advisory_xact_lock({ROLLUP_LOCK_ID}); {_TUNING} "
            "SET LOCAL synchronous_commit = off"
        )
    elif conn.dialect.name == "sqlite":
        try:
            conn.exec_driver_sql("SELECT ln(2)")
        except OperationalError:  # an SQLite built without its math functions
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.create_function("ln", 1, _null_safe(math.log), deterministic=True)


_TUNING: Final = (
    f"SET LOCAL jit = off; SET LOCAL work_mem = '{POSTGRES_WORK_MEM}'; SET LOCAL enable_sort = off;"
)


def _tune(conn: Connection) -> None:
    conn.exec_driver_sql(_TUNING)


def _null_safe(function: Callable[[float], float]) -> Callable[[float | None], float | None]:
    def apply(value: float | None) -> float | None:
        return None if value is None else function(value)

    return apply


def count_calls_since(conn: Connection, since: datetime | None) -> int:
    """Calls with a key started at or after ``since`` (all of them when ``None``)."""
    binds, values = bind_params(since, None, None)
    query = text(f"SELECT count(*) FROM api_calls WHERE {calls_window(since, None, False)}")
    return int(conn.execute(query.bindparams(*binds), values).scalar_one())


def aggregate_calls(
    conn: Connection,
    start: datetime | None,
    end: datetime | None = None,
    *,
    hourly: bool = True,
    key_ids: Sequence[str] | None = None,
) -> dict[Any, Totals]:
    """Totals of the calls started in ``[start, end)`` (``None``: unbounded), with histograms.

    Grouped per :data:`~monitor.ledger.totals.HourlyKey` when ``hourly``, else per key id.
    Percentiles are left ``None``: :func:`monitor.ledger.totals.finish` derives them from the
    histograms.
    """
    groups = ["key_id", "bin", "model", "stream"] if hourly else ["key_id"]
    sql = grouped_calls_sql(
        conn, groups, HOUR if hourly else None, calls_window(start, end, key_ids is not None)
    )
    binds, values = bind_params(start, end, key_ids)
    width = len(groups)
    result: dict[Any, Totals] = {}
    for row in conn.execute(text(sql).bindparams(*binds), values):
        result[_group_key(row, width)] = totals_of(row[width:])
    return result


def aggregate_hours(
    conn: Connection,
    start: datetime | None,
    end: datetime | None,
    meanwhile: Callable[[], object] | None = None,
) -> dict[HourlyKey, Totals]:
    """:func:`aggregate_calls` per hour for ``[start, end)``, one query per hour with calls.

    A day of ten million calls in one hash table would spill to disk; an hour's groups take
    tens of megabytes. Hours without calls are skipped with one index probe each. On Postgres
    :data:`AGGREGATION_WORKERS` connections aggregate hours side by side (the planner will not
    aggregate in parallel itself: it expects as many groups as calls), and ``meanwhile`` (work
    of ``conn``'s own) runs on ``conn`` as they do; elsewhere it runs after them.
    """
    hours: list[tuple[datetime, datetime]] = []
    at = start
    while (first := _first_call_at(conn, at, end)) is not None:
        chunk = hour_start(first) if at is None else max(hour_start(first), at)
        at = chunk + HOUR if end is None else min(chunk + HOUR, end)
        hours.append((chunk, at))
    result: dict[HourlyKey, Totals] = {}
    if conn.dialect.name != "postgresql" or len(hours) < 2:
        for first_hour, end_hour in hours:
            result.update(aggregate_calls(conn, first_hour, end_hour))
        if meanwhile is not None:
            meanwhile()
        return result
    engine = conn.engine

    def aggregate(span: tuple[datetime, datetime]) -> dict[HourlyKey, Totals]:
        with engine.begin() as worker:
            _tune(worker)
            return aggregate_calls(worker, *span)

    with ThreadPoolExecutor(AGGREGATION_WORKERS) as pool:
        aggregated = pool.map(aggregate, hours)  # every hour is handed to the pool now
        if meanwhile is not None:
            meanwhile()
        for groups in aggregated:
            result.update(groups)
    return result


def _first_call_at(conn: Connection, start: datetime | None, end: datetime | None) -> Any:
    binds, values = bind_params(start, end, None)
    window = calls_window(start, end, False)
    query = text(f"SELECT min(started_at) FROM api_calls WHERE {window}").bindparams(*binds)
    first = conn.execute(query, values).scalar_one()
    return None if first is None else instant(first)


_SUMMED: Final = SUMMED_FIGURES


def sum_rows(
    conn: Connection,
    table: Table,
    start: datetime,
    end: datetime | None,
    *,
    key_ids: Sequence[str] | None = None,
    by_hour: bool = False,
    excluding: Sequence[datetime] = (),
) -> dict[Any, Totals]:
    """The sums of ``table``'s rows (``hourly_usage`` or ``usage_slices``) in ``[start, end)``
    (``end`` ``None``: no end), leaving out the rows starting at one of ``excluding``.

    Grouped per key id, or per :data:`~monitor.ledger.totals.HourlyKey` when ``by_hour`` (slices
    added up into their hours); histograms and error classes included.
    """
    time_column = "hour" if table.name == "hourly_usage" else "slice_start"
    if by_hour:
        groups = f"key_id, {bin_sql(conn, time_column, HOUR)}, model, stream"
        width = 4
    else:
        groups, width = "key_id", 1
    window = f"{time_column} >= :start" + ("" if end is None else f" AND {time_column} < :end")
    if key_ids is not None:
        window += " AND key_id IN :key_ids"
    binds, values = bind_params(start, end, key_ids)
    if excluding:
        window += f" AND {time_column} NOT IN :excluding"
        binds.append(bindparam("excluding", expanding=True, type_=UTCDateTime()))
        values["excluding"] = list(excluding)
    names = [*_SUMMED, *LATENCY_HISTOGRAM, *TTFT_HISTOGRAM]
    query = text(
        f"SELECT {groups}, {', '.join(f'CAST(sum({name}) AS BIGINT)' for name in names)}, "
        "min(latency_min_ms), max(latency_max_ms), min(ttft_min_ms), max(ttft_max_ms) "
        f"FROM {table.name} WHERE {window} GROUP BY {groups}"
    ).bindparams(*binds)
    result: dict[Any, Totals] = {}
    for row in conn.execute(query, values):
        key = _group_key(row, width)
        sums = list(row[width : width + len(names)])
        totals = Totals()
        for name, value in zip(_SUMMED, sums, strict=False):
            setattr(totals, name, value)
        totals.latency_histogram = sums[len(_SUMMED) : len(_SUMMED) + BUCKETS]
        totals.ttft_histogram = sums[len(_SUMMED) + BUCKETS :]
        (
            totals.latency_min_ms,
            totals.latency_max_ms,
            totals.ttft_min_ms,
            totals.ttft_max_ms,
        ) = row[width + len(names) :]
        result[key] = totals
    each = "jsonb_each_text" if conn.dialect.name == "postgresql" else "json_each"
    errors = conn.execute(
        text(
            f"SELECT {groups}, e.key, sum(CAST(e.value AS BIGINT)) "
            f"FROM {table.name}, {each}({table.name}.errors_by_class) AS e "
            f"WHERE {window} GROUP BY {groups}, e.key ORDER BY e.key"
        ).bindparams(*binds),
        values,
    )
    for row in errors:
        by_class = result[_group_key(row, width)].errors_by_class
        by_class[row[width]] = int(row[width + 1])
    return result


def _group_key(row: Sequence[Any], width: int) -> Any:
    if width == 1:
        return row[0]
    key_id, hour, model, stream = row[:4]
    return key_id, instant(hour), model, bool(stream)


def daily_from_hours(
    conn: Connection, start: datetime, end: datetime, key_ids: Sequence[str]
) -> dict[str, Totals]:
    """Per key of ``key_ids``, the sum of its ``hourly_usage`` rows with ``start <= hour < end``.

    ``start`` and ``end`` must be whole UTC hours (a quota day in a whole-hour time zone).
    """
    return cast(dict[str, Totals], sum_rows(conn, hourly_usage, start, end, key_ids=key_ids))


# --- writing ----------------------------------------------------------------------------------

_HOURLY_KEYS: Final = ("key_id", "hour", "model", "stream")
_HOURLY_COLUMNS: Final = (
    *_HOURLY_KEYS,
    "requests",
    "errors",
    "errors_by_class",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
    "uncached_input_tokens",
    "cached_input_tokens",
    "latency_min_ms",
    "latency_max_ms",
    "ttft_min_ms",
    "ttft_max_ms",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "updated_at",
    *LATENCY_HISTOGRAM,
    *TTFT_HISTOGRAM,
)
_DAILY_KEYS: Final = ("key_id", "day")
_DAILY_COLUMNS: Final = (
    *_DAILY_KEYS,
    "requests",
    "errors",
    "errors_by_class",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
    "uncached_input_tokens",
    "cached_input_tokens",
    "quota",
    "latency_p50_ms",
    "latency_p95_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "updated_at",
)


def _upsert(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    keys: Sequence[str] | None,
    rows: list[Any],
) -> None:
    """Insert ``rows``, replacing those with the same ``keys`` (``None``: none can conflict)."""
    if not rows:
        return
    listed = ", ".join(columns)
    conflict = ""
    if keys is not None:
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in keys)
        conflict = f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    if conn.dialect.name != "postgresql":
        marks = ", ".join(["?"] * len(columns))
        conn.exec_driver_sql(f"INSERT INTO {table} ({listed}) VALUES ({marks}){conflict}", rows)
        return
    # COPY (into a session temporary table, then one INSERT … SELECT to upsert): hundreds of
    # rows of 130 columns go in a few milliseconds, where a row per statement takes a second.
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    staging = table if keys is None else f"lcm_staged_{table}"
    with driver.cursor() as cursor:
        if keys is not None:
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS "
                f"SELECT {listed} FROM {table} WITH NO DATA"
            )
        with cursor.copy(f"COPY {staging} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        if keys is not None:
            cursor.execute(
                f"INSERT INTO {table} ({listed}) SELECT {listed} FROM {staging}{conflict}"
            )
            cursor.execute(f"TRUNCATE {staging}")


def _json_of(conn: Connection) -> Any:
    return Jsonb if conn.dialect.name == "postgresql" else json.dumps


def write_hourly(
    conn: Connection,
    groups: Mapping[HourlyKey, Totals],
    *,
    now: datetime,
    whole_hours: Sequence[datetime] | None = None,
) -> None:
    """Upsert one ``hourly_usage`` row per group (percentiles as they are in each Totals).

    With ``whole_hours`` (``groups`` then holds every group of those hours, and only those),
    the hours' rows are replaced instead, which costs less than an upsert.
    """
    time_of = CONVERTERS[conn.dialect.name][0]
    json_of = _json_of(conn)
    stamp = time_of(now)
    rows = [
        (
            key_id,
            time_of(hour),
            model,
            stream,
            t.requests,
            t.errors,
            json_of(t.errors_by_class),
            t.input_tokens,
            t.output_tokens,
            t.cache_read_tokens,
            t.reasoning_tokens,
            t.total_tokens,
            t.uncached_input_tokens,
            t.cached_input_tokens,
            t.latency_min_ms,
            t.latency_max_ms,
            t.ttft_min_ms,
            t.ttft_max_ms,
            t.latency_p50_ms,
            t.latency_p95_ms,
            t.latency_p99_ms,
            t.ttft_p50_ms,
            t.ttft_p95_ms,
            stamp,
            *t.latency_histogram,
            *t.ttft_histogram,
        )
        for (key_id, hour, model, stream), t in sorted(groups.items())
    ]
    if whole_hours is None:
        _upsert(conn, "hourly_usage", _HOURLY_COLUMNS, _HOURLY_KEYS, rows)
        return
    # Every row of those hours is in ``rows``: delete, then insert with no conflict to resolve.
    delete = text("DELETE FROM hourly_usage WHERE hour IN :hours")
    hours = bindparam("hours", expanding=True, type_=UTCDateTime())
    conn.execute(delete.bindparams(hours), {"hours": list(whole_hours)})
    _upsert(conn, "hourly_usage", _HOURLY_COLUMNS, None, rows)


def write_daily(
    conn: Connection, days: Iterable[tuple[str, date, Totals, int]], *, now: datetime
) -> int:
    """Upsert ``daily_usage`` rows from ``(key_id, day, totals, quota)``; rows written."""
    time_of = CONVERTERS[conn.dialect.name][0]
    json_of = _json_of(conn)
    stamp = time_of(now)
    sqlite = conn.dialect.name == "sqlite"
    rows = [
        (
            key_id,
            day.isoformat() if sqlite else day,
            t.requests,
            t.errors,
            json_of(t.errors_by_class),
            t.input_tokens,
            t.output_tokens,
            t.cache_read_tokens,
            t.reasoning_tokens,
            t.total_tokens,
            t.uncached_input_tokens,
            t.cached_input_tokens,
            quota,
            t.latency_p50_ms,
            t.latency_p95_ms,
            t.ttft_p50_ms,
            t.ttft_p95_ms,
            stamp,
        )
        for key_id, day, t, quota in days
    ]
    _upsert(conn, DailyUsage.__tablename__, _DAILY_COLUMNS, _DAILY_KEYS, rows)
    return len(rows)
