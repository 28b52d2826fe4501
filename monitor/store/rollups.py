"""The rollup's SQL: hourly groups aggregated from ``api_calls``, days derived from hourly rows.

Everything heavy runs in the database as ``GROUP BY``: Python receives one row per group, error
class and latency bucket (tens of thousands for a day of ten million calls), never a raw call.

- :func:`aggregate_calls` groups calls per ``(key, UTC hour, model, stream)`` (or per key, for a
  span of time) with token sums, exact minimum and maximum latency and TTFT, and their
  :mod:`monitor.histogram` bucket counts.
- :func:`daily_from_hours` adds up a quota day's ``hourly_usage`` rows per key, histograms included,
  so a tick never rereads a day of raw calls.
- :func:`write_hourly` / :func:`write_daily` upsert many rows in one driver ``executemany``.

On Postgres the aggregation runs with JIT off and enough ``work_mem`` for hash aggregation
(``SET LOCAL``: the transaction only); compiling the expressions costs more than they save here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final, cast

from psycopg.types.json import Jsonb
from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Table,
    bindparam,
    func,
    select,
    text,
    type_coerce,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import OperationalError

from monitor.histogram import BUCKETS, BUCKETS_PER_E, LAST
from monitor.rollup import HourlyKey, Totals, counts_toward_quota
from monitor.store.calls import CONVERTERS
from monitor.store.models import (
    LATENCY_HISTOGRAM,
    TTFT_HISTOGRAM,
    ApiCall,
    DailyUsage,
    HourlyUsage,
    UTCDateTime,
)

#: ``work_mem`` for the aggregation on Postgres: a day's groups fit in a hash table.
POSTGRES_WORK_MEM: Final = "256MB"

hourly_usage: Final = cast(Table, HourlyUsage.__table__)

__all__ = [
    "aggregate_calls",
    "count_calls_since",
    "daily_from_hours",
    "prepare",
    "write_daily",
    "write_hourly",
]


def prepare(conn: Connection) -> None:
    """Set the session up for aggregation (call at the start of the rollup's transaction)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL jit = off")
        conn.exec_driver_sql(f"SET LOCAL work_mem = '{POSTGRES_WORK_MEM}'")
    elif conn.dialect.name == "sqlite":
        try:
            conn.exec_driver_sql("SELECT ln(2)")
        except OperationalError:  # an SQLite built without its math functions
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.create_function("ln", 1, _null_safe(math.log), deterministic=True)


def _null_safe(function: Callable[[float], float]) -> Callable[[float | None], float | None]:
    def apply(value: float | None) -> float | None:
        return None if value is None else function(value)

    return apply


def _hour(conn: Connection) -> ColumnElement[datetime]:
    started_at = ApiCall.started_at
    if conn.dialect.name == "postgresql":
        expr: ColumnElement[Any] = func.date_trunc("hour", started_at, "UTC")
    else:  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC)
        expr = func.substr(started_at, 1, 13).concat(":00:00.000000")
    return type_coerce(expr, UTCDateTime())


def _bucket(conn: Connection, column: Any) -> ColumnElement[int]:
    """SQL for :func:`monitor.histogram.bucket_of`."""
    if conn.dialect.name == "postgresql":
        scaled = func.floor(func.ln(func.greatest(column, 1.0)) * BUCKETS_PER_E)
        return sql_cast(func.least(scaled, LAST), Integer)
    # SQLAlchemy replaces SQLite's floor() with a Python one that rejects NULL; the value is
    # never negative here, so truncating is flooring.
    truncated = sql_cast(func.ln(func.max(column, 1.0)) * BUCKETS_PER_E, Integer)
    return cast(ColumnElement[int], func.min(truncated, LAST))


def _window(query: Any, start: datetime | None, end: datetime | None) -> Any:
    query = query.where(ApiCall.key_id.is_not(None))
    if start is not None:
        query = query.where(ApiCall.started_at >= start)
    if end is not None:
        query = query.where(ApiCall.started_at < end)
    return query


def count_calls_since(conn: Connection, since: datetime | None) -> int:
    """Calls with a key started at or after ``since`` (all of them when ``None``)."""
    return int(conn.execute(_window(select(func.count()), since, None)).scalar_one())


def aggregate_calls(
    conn: Connection,
    start: datetime | None,
    end: datetime | None = None,
    *,
    hourly: bool = True,
    key_ids: Sequence[str] | None = None,
) -> dict[Any, Totals]:
    """Totals of the calls started in ``[start, end)`` (``None``: unbounded), with histograms.

    Grouped per :data:`~monitor.rollup.HourlyKey` when ``hourly``, else per key id. Percentiles
    are left ``None``: :func:`monitor.rollup.finish` derives them from the histograms.
    """
    c = ApiCall
    groups: list[Any] = [c.key_id]
    if hourly:
        groups += [_hour(conn), func.coalesce(c.model, ""), c.stream]
    tokens = func.coalesce(
        c.total_tokens, func.coalesce(c.input_tokens, 0) + func.coalesce(c.output_tokens, 0)
    )
    latency_bucket = _bucket(conn, c.latency_ms)
    figures = _window(
        select(
            *groups,
            c.error_type,
            latency_bucket,
            func.count(),
            func.count(c.latency_ms),
            func.coalesce(func.sum(c.input_tokens), 0),
            func.coalesce(func.sum(c.output_tokens), 0),
            func.coalesce(func.sum(c.cache_read_tokens), 0),
            func.coalesce(func.sum(c.reasoning_tokens), 0),
            func.sum(tokens),
            func.min(c.latency_ms),
            func.max(c.latency_ms),
            func.min(c.ttft_ms),
            func.max(c.ttft_ms),
        ),
        start,
        end,
    ).group_by(*groups, c.error_type, latency_bucket)
    ttft_bucket = _bucket(conn, c.ttft_ms)
    ttfts = _window(select(*groups, ttft_bucket, func.count()), start, end)
    ttfts = ttfts.where(c.ttft_ms.is_not(None)).group_by(*groups, ttft_bucket)
    if key_ids is not None:
        figures = figures.where(c.key_id.in_(key_ids))
        ttfts = ttfts.where(c.key_id.in_(key_ids))
    width = len(groups)
    result: dict[Any, Totals] = {}
    for row in conn.execute(figures):
        key = tuple(row[:width]) if hourly else row[0]
        error_type, bucket, n, timed, input_, output, cache, reasoning, total = row[width:-4]
        low_latency, high_latency, low_ttft, high_ttft = row[-4:]
        totals = result.get(key)
        if totals is None:
            totals = result[key] = Totals()
        totals.requests += n
        if error_type is not None:
            totals.errors += n
            totals.errors_by_class[error_type] = totals.errors_by_class.get(error_type, 0) + n
        if counts_toward_quota(error_type):
            totals.input_tokens += int(input_)
            totals.output_tokens += int(output)
            totals.cache_read_tokens += int(cache)
            totals.reasoning_tokens += int(reasoning)
            totals.total_tokens += int(total)
        if timed:
            totals.latency_histogram[bucket] += timed
        totals.latency_min_ms = _least(totals.latency_min_ms, low_latency)
        totals.latency_max_ms = _most(totals.latency_max_ms, high_latency)
        totals.ttft_min_ms = _least(totals.ttft_min_ms, low_ttft)
        totals.ttft_max_ms = _most(totals.ttft_max_ms, high_ttft)
    for row in conn.execute(ttfts):
        key = tuple(row[:width]) if hourly else row[0]
        result[key].ttft_histogram[row[width]] += row[width + 1]
    for totals in result.values():
        totals.errors_by_class = dict(sorted(totals.errors_by_class.items()))
    return result


def _least(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _most(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


_SUMMED: Final = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "reasoning_tokens",
    "total_tokens",
)


def daily_from_hours(
    conn: Connection, start: datetime, end: datetime, key_ids: Sequence[str]
) -> dict[str, Totals]:
    """Per key of ``key_ids``, the sum of its ``hourly_usage`` rows with ``start <= hour < end``.

    ``start`` and ``end`` must be whole UTC hours (a quota day in a whole-hour time zone).
    """
    h = hourly_usage.c
    window = [h.hour >= start, h.hour < end, h.key_id.in_(key_ids)]
    query = (
        select(
            h.key_id,
            *[func.sum(h[name]) for name in _SUMMED],
            func.min(h.latency_min_ms),
            func.max(h.latency_max_ms),
            func.min(h.ttft_min_ms),
            func.max(h.ttft_max_ms),
            *[func.sum(h[name]) for name in (*LATENCY_HISTOGRAM, *TTFT_HISTOGRAM)],
        )
        .where(*window)
        .group_by(h.key_id)
    )
    result: dict[str, Totals] = {}
    for row in conn.execute(query):
        sums = [int(value) for value in row[1 : 1 + len(_SUMMED)]]
        extremes = row[1 + len(_SUMMED) : 5 + len(_SUMMED)]
        counts = [int(value) for value in row[5 + len(_SUMMED) :]]
        totals = Totals()
        for name, value in zip(_SUMMED, sums, strict=True):
            setattr(totals, name, value)
        totals.latency_min_ms, totals.latency_max_ms, totals.ttft_min_ms, totals.ttft_max_ms = (
            extremes
        )
        totals.latency_histogram = counts[:BUCKETS]
        totals.ttft_histogram = counts[BUCKETS:]
        result[row[0]] = totals
    each = "jsonb_each_text" if conn.dialect.name == "postgresql" else "json_each"
    errors = conn.execute(
        text(
            f"SELECT h.key_id, e.key, sum(CAST(e.value AS BIGINT)) "
            f"FROM hourly_usage h, {each}(h.errors_by_class) AS e "
            "WHERE h.hour >= :start AND h.hour < :end AND h.key_id IN :key_ids "
            "GROUP BY h.key_id, e.key ORDER BY h.key_id, e.key"
        ).bindparams(
            bindparam("start", type_=UTCDateTime()),
            bindparam("end", type_=UTCDateTime()),
            bindparam("key_ids", expanding=True),
        ),
        {"start": start, "end": end, "key_ids": list(key_ids)},
    )
    for key_id, error_type, n in errors:
        result[key_id].errors_by_class[error_type] = int(n)
    return result


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
    "quota",
    "latency_p50_ms",
    "latency_p95_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "updated_at",
)


def _upsert(
    conn: Connection, table: str, columns: Sequence[str], keys: Sequence[str], rows: list[Any]
) -> None:
    if not rows:
        return
    mark = "%s" if conn.dialect.name == "postgresql" else "?"
    updates = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in keys)
    conn.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}",
        rows,
    )


def _json_of(conn: Connection) -> Any:
    return Jsonb if conn.dialect.name == "postgresql" else json.dumps


def write_hourly(conn: Connection, groups: Mapping[HourlyKey, Totals], *, now: datetime) -> None:
    """Upsert one ``hourly_usage`` row per group (percentiles as they are in each Totals)."""
    time_of, _ = CONVERTERS[conn.dialect.name]
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
    _upsert(conn, "hourly_usage", _HOURLY_COLUMNS, _HOURLY_KEYS, rows)


def write_daily(
    conn: Connection, days: Iterable[tuple[str, date, Totals, int]], *, now: datetime
) -> int:
    """Upsert ``daily_usage`` rows from ``(key_id, day, totals, quota)``; rows written."""
    time_of, _ = CONVERTERS[conn.dialect.name]
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
