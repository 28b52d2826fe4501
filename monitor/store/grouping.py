"""SQL for one scan of ``api_calls`` grouped by hour, slice or key: what the rollup aggregates.

:func:`grouped_calls_sql` gives one row per group with the figures of
:class:`~monitor.ledger.totals.Totals`:
requests, errors by class, billed token sums, latency and TTFT
extremes and histograms (sparse JSON objects, bucket → count), read back by :func:`totals_of`.
The helpers build the pieces (time bins, buckets, the window of calls) for both dialects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, cast

from sqlalchemy import Connection, bindparam

from monitor.ledger.histogram import BUCKETS, BUCKETS_PER_E, LAST
from monitor.ledger.totals import Totals
from monitor.records import UNBILLED_ERROR_TYPES
from monitor.store.models import ROLLUP_KEY_CHARS, UTCDateTime

__all__ = [
    "BILLED",
    "BILLED_TOKENS",
    "bin_sql",
    "bind_params",
    "calls_window",
    "grouped_calls_sql",
    "instant",
    "split_sql",
    "totals_of",
]


def bin_sql(conn: Connection, column: str, width: timedelta) -> str:
    """SQL for the start of the ``width``-long UTC bin (an hour, a slice) holding ``column``.

    Postgres: ``date_bin`` (integer arithmetic; ``date_trunc`` with a zone converts every row).
    SQLite stores ``'YYYY-MM-DD HH:MM:SS.ffffff'`` (naive UTC): the bin is cut from the text.
    """
    seconds = int(width.total_seconds())
    if conn.dialect.name == "postgresql":
        return f"date_bin(INTERVAL '{seconds} seconds', {column}, TIMESTAMPTZ '{_ORIGIN}')"
    # Colons escaped: this SQL goes through text(), where ':name' is a parameter.
    if seconds == 3600:
        return f"substr({column}, 1, 13) || '\\:00\\:00.000000'"
    minutes = seconds // 60
    return (
        f"substr({column}, 1, 14) || printf('%02d', "
        f"CAST(substr({column}, 15, 2) AS INTEGER) / {minutes} * {minutes}) || '\\:00.000000'"
    )


_ORIGIN: Final = "2000-01-01 00:00:00+00"


def _bucket(conn: Connection, column: str) -> str:
    """SQL for :func:`monitor.ledger.histogram.bucket_of` (``NULL`` for ``NULL``)."""
    if conn.dialect.name == "postgresql":
        # greatest() skips NULLs: a missing value must stay NULL, not land in bucket 0.
        scaled = f"floor(ln(greatest({column}, 1.0)) * {BUCKETS_PER_E})"
        return f"CASE WHEN {column} IS NOT NULL THEN CAST(least({scaled}, {LAST}) AS INTEGER) END"
    # The value is never negative here, so truncating is flooring (and SQLAlchemy replaces
    # SQLite's floor() with a Python one that rejects NULL).
    return f"min(CAST(ln(max({column}, 1.0)) * {BUCKETS_PER_E} AS INTEGER), {LAST})"


def calls_window(start: datetime | None, end: datetime | None, key_ids: bool) -> str:
    conditions = ["key_id IS NOT NULL"]
    if start is not None:
        conditions.append("started_at >= :start")
    if end is not None:
        conditions.append("started_at < :end")
    if key_ids:
        conditions.append("key_id IN :key_ids")
    return " AND ".join(conditions)


def bind_params(
    start: datetime | None, end: datetime | None, key_ids: Sequence[str] | None
) -> tuple[list[Any], dict[str, Any]]:
    binds: list[Any] = []
    values: dict[str, Any] = {}
    if start is not None:
        binds.append(bindparam("start", type_=UTCDateTime()))
        values["start"] = start
    if end is not None:
        binds.append(bindparam("end", type_=UTCDateTime()))
        values["end"] = end
    if key_ids is not None:
        binds.append(bindparam("key_ids", expanding=True))
        values["key_ids"] = list(key_ids)
    return binds, values


#: Error classes whose calls are not billed, as an SQL list (constants of the project).
_UNBILLED_SQL: Final = ", ".join(f"'{name}'" for name in sorted(UNBILLED_ERROR_TYPES))
#: SQL: the call is billed (its tokens count toward the quota).
BILLED: Final = f"(error_type IS NULL OR error_type NOT IN ({_UNBILLED_SQL}))"
#: SQL: a call's billed tokens, as :func:`monitor.ledger.totals.billed_tokens` (if billed).
BILLED_TOKENS: Final = (
    "coalesce(total_tokens, coalesce(input_tokens, 0) + coalesce(output_tokens, 0))"
)
#: ``GROUPING(error_type, lb, tb)`` of the three grouping sets below.
_FIGURES_PART, _LATENCY_PART, _TTFT_PART = 3, 5, 6
_TOKENS: Final = ("input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens")
#: Token sums of the grouped rows, after the ``_TOKENS``: the billed tokens and the input split
#: as it is priced, named as their columns.
_SUMS: Final = {
    "tokens": "total_tokens",
    "uncached_input": "uncached_input_tokens",
    "cached_input": "cached_input_tokens",
}


def split_sql(conn: Connection) -> str:
    """SQL for a call's uncached and cached input, the rule of
    :func:`monitor.ledger.prices.split_tokens`: Anthropic's input excludes the cache (cache
    creation is uncached input), every other API's input includes the cached tokens."""
    least = "least" if conn.dialect.name == "postgresql" else "min"
    inputs, read = "coalesce(input_tokens, 0)", "coalesce(cache_read_tokens, 0)"
    cached = f"CASE WHEN api = 'anthropic' THEN {read} ELSE {least}({read}, {inputs}) END"
    return (
        f"CASE WHEN api = 'anthropic' THEN {inputs} + coalesce(cache_write_tokens, 0) "
        f"ELSE {inputs} - {least}({read}, {inputs}) END AS uncached_input, {cached} AS cached_input"
    )


def grouped_calls_sql(
    conn: Connection, groups: Sequence[str], bin_width: timedelta | None, window: str
) -> str:
    """SQL giving one row per group of ``groups`` (``bin`` among them when ``bin_width``).

    Columns: the groups, ``requests``, ``errors``, ``errors_by_class`` (JSON), the billed token
    sums, latency and TTFT minimum and maximum, and the histograms as sparse JSON objects
    ``latency_counts`` / ``ttft_counts`` (bucket → count). One scan of ``api_calls``: on
    Postgres three grouping sets (figures by error class, latency buckets, TTFT buckets) are
    filled at once; SQLite, which has no grouping sets, groups three times.
    """
    postgres = conn.dialect.name == "postgresql"
    binned = f"{bin_sql(conn, 'started_at', bin_width)} AS bin, " if bin_width is not None else ""
    calls = (
        f"SELECT key_id, {binned}substr(coalesce(model, ''), 1, {ROLLUP_KEY_CHARS}) AS model, "
        "stream, error_type, "
        f"{', '.join(_TOKENS)}, {BILLED_TOKENS} AS tokens, "
        f"{split_sql(conn)}, latency_ms, ttft_ms, {_bucket(conn, 'latency_ms')} AS lb, "
        f"{_bucket(conn, 'ttft_ms')} AS tb FROM api_calls WHERE {window}"
    )
    keys = ", ".join(groups)
    summed = (*_TOKENS, *_SUMS)
    sums = ", ".join(f"sum({name}) AS {name}" for name in summed)
    extremes = (
        "min(latency_ms) AS latency_min, max(latency_ms) AS latency_max, "
        "min(ttft_ms) AS ttft_min, max(ttft_ms) AS ttft_max"
    )
    if postgres:
        # One hash table over the calls, then the three grouping sets over its (far fewer)
        # rows: grouping sets straight over the calls would fill three hash tables a call.
        # Sums of bigint are numeric, slow to add up: a fine group's count fits an integer, and
        # its token sums add up exactly as doubles (integers far below 2^53).
        fine = (
            f"SELECT {keys}, error_type, lb, tb, CAST(count(*) AS INTEGER) AS n, {sums}, "
            f"{extremes} FROM calls GROUP BY {keys}, error_type, lb, tb"
        )
        resummed = ", ".join(f"sum(CAST({name} AS DOUBLE PRECISION)) AS {name}" for name in summed)
        grouped = (
            f"SELECT {keys}, error_type, lb, tb, GROUPING(error_type, lb, tb) AS part, "
            f"CAST(sum(n) AS INTEGER) AS n, {resummed}, min(latency_min) AS latency_min, "
            "max(latency_max) AS latency_max, min(ttft_min) AS ttft_min, "
            f"max(ttft_max) AS ttft_max FROM ({fine}) AS fine GROUP BY GROUPING SETS "
            f"(({keys}, error_type), ({keys}, lb), ({keys}, tb))"
        )
        as_object, as_key = "jsonb_object_agg", "{}"
    else:
        nothing = ", ".join(f"NULL AS {name}" for name in summed)
        no_extremes = "NULL AS latency_min, NULL AS latency_max, NULL AS ttft_min, NULL AS ttft_max"
        grouped = (
            f"SELECT {keys}, error_type, NULL AS lb, NULL AS tb, {_FIGURES_PART} AS part, "
            f"count(*) AS n, {sums}, {extremes} FROM calls GROUP BY {keys}, error_type "
            f"UNION ALL SELECT {keys}, NULL, lb, NULL, {_LATENCY_PART}, count(*), {nothing}, "
            f"{no_extremes} FROM calls WHERE lb IS NOT NULL GROUP BY {keys}, lb "
            f"UNION ALL SELECT {keys}, NULL, NULL, tb, {_TTFT_PART}, count(*), {nothing}, "
            f"{no_extremes} FROM calls WHERE tb IS NOT NULL GROUP BY {keys}, tb"
        )
        as_object, as_key = "json_group_object", "CAST({} AS TEXT)"
    figures = f"part = {_FIGURES_PART}"
    billed = ", ".join(
        f"CAST(coalesce(sum({name}) FILTER (WHERE {figures} AND {BILLED}), 0) AS BIGINT) AS "
        f"{_SUMS.get(name, name)}"
        for name in summed
    )
    failed = f"{figures} AND error_type IS NOT NULL"
    return (
        f"WITH calls AS ({calls}), grouped AS ({grouped}) "
        f"SELECT {keys}, CAST(sum(n) FILTER (WHERE {figures}) AS BIGINT) AS requests, "
        f"CAST(coalesce(sum(n) FILTER (WHERE {failed}), 0) AS BIGINT) AS errors, "
        f"{as_object}(error_type, n) FILTER (WHERE {failed}) AS errors_by_class, {billed}, "
        "min(latency_min) AS latency_min_ms, max(latency_max) AS latency_max_ms, "
        "min(ttft_min) AS ttft_min_ms, max(ttft_max) AS ttft_max_ms, "
        f"{as_object}({as_key.format('lb')}, n) FILTER (WHERE part = {_LATENCY_PART} "
        "AND lb IS NOT NULL) AS latency_counts, "
        f"{as_object}({as_key.format('tb')}, n) FILTER (WHERE part = {_TTFT_PART} "
        "AND tb IS NOT NULL) AS ttft_counts "
        f"FROM grouped GROUP BY {keys}"
    )


def _json_value(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    return cast(dict[str, int], json.loads(value) if isinstance(value, str) else value)


def _dense(counts: Any) -> list[int]:
    histogram = [0] * BUCKETS
    for bucket, n in _json_value(counts).items():
        histogram[int(bucket)] += int(n)
    return histogram


def totals_of(row: Sequence[Any]) -> Totals:
    """A :class:`Totals` from the figures of a :func:`grouped_calls_sql` row (after its groups)."""
    requests, errors, by_class, input_, output, cache, reasoning, total, uncached, cached = row[:10]
    low_latency, high_latency, low_ttft, high_ttft, latency, ttft = row[10:]
    return Totals(
        requests=int(requests),
        errors=int(errors),
        errors_by_class=dict(sorted((k, int(v)) for k, v in _json_value(by_class).items())),
        input_tokens=int(input_),
        output_tokens=int(output),
        cache_read_tokens=int(cache),
        reasoning_tokens=int(reasoning),
        total_tokens=int(total),
        uncached_input_tokens=int(uncached),
        cached_input_tokens=int(cached),
        latency_min_ms=low_latency,
        latency_max_ms=high_latency,
        ttft_min_ms=low_ttft,
        ttft_max_ms=high_ttft,
        latency_histogram=_dense(latency),
        ttft_histogram=_dense(ttft),
    )


def instant(value: datetime | str) -> datetime:
    """An aware UTC datetime from a bin computed in SQL (SQLite gives its stored text)."""
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC)
