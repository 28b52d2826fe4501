"""Time series for the dashboard's charts, read from the rollups wherever they can be.

Everything hourly comes from the rollups: ``usage_by_hour`` and ``errors_by_hour`` (summed over
keys) when no key is chosen, ``hourly_usage`` (one row per key, UTC hour, model and streaming
mode) otherwise, so a chart costs the same at a thousand calls or ten million. Only an endpoint
filter (which the rollups do not keep) and the label breakdown read ``api_calls``, bounded by the
date range on the ``started_at`` index; the breakdown not at all when no label was seen.

Percentiles cannot be added up: where one bucket combines several rollup rows (several keys, or
the hours of a day) the figure shown is their request-weighted mean, which is exact for a single
row and a close, stated approximation otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime, tzinfo
from typing import Any, Final, Literal, cast

from sqlalchemy import BigInteger, Connection, case, func, select, true
from sqlalchemy import cast as sql_cast

from monitor.ledger.quota_day import day_start, quota_day
from monitor.ledger.totals import CallFacts, billed_tokens, group_hourly
from monitor.queries.filters import Filters
from monitor.store import summaries
from monitor.store.keys import quota_histories, quota_on
from monitor.store.models import (
    SUMMED_FIGURES,
    WEIGHTED_PERCENTILES,
    ApiCall,
    DailyUsage,
    HourlyUsage,
)

Bucket = Literal["hour", "day"]

#: Ranges up to this many days are charted by the hour, longer ones by the quota day.
HOURLY_UP_TO_DAYS: Final = 7
#: The label breakdown reads at most this many calls (newest first) and says when it stopped.
LABEL_SCAN_LIMIT: Final = 200_000


@dataclass(frozen=True, slots=True)
class HourRow:
    """One ``hourly_usage`` row (or the same figures computed from ``api_calls``)."""

    hour: datetime
    key_id: str
    model: str
    stream: bool
    requests: int
    errors: int
    errors_by_class: dict[str, int]
    input_tokens: int
    output_tokens: int
    total_tokens: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None


def bucket_for(filters: Filters) -> Bucket:
    """Hourly buckets for short ranges, quota days for long ones."""
    return "hour" if filters.days <= HOURLY_UP_TO_DAYS else "day"


def bucket_start(hour: datetime, bucket: Bucket, tz: tzinfo) -> datetime:
    """The UTC start of the bucket an hour falls in."""
    return hour if bucket == "hour" else day_start(quota_day(hour, tz), tz)


def hourly_rows(
    conn: Connection,
    filters: Filters,
    tz: tzinfo,
    *,
    by_key: bool = False,
    error_classes: bool = True,
) -> list[HourRow]:
    """The hourly figures in the filters' range, oldest first.

    Summed over keys in the database (``key_id`` is :data:`ALL_KEYS`) unless ``by_key``: a chart
    of 90 days then reads one row per hour, model and streaming mode, not one per key as well
    (from ``usage_by_hour`` when no key is chosen). Percentiles of a summed row are the
    request-weighted mean of its keys'. With an endpoint filter the figures are computed from
    the matching ``api_calls``, per key.

    A range charted by day (:func:`bucket_for`) on Postgres comes summed per quota day in the
    database: one row per day (``hour`` is the day's start), model and mode. Without
    ``error_classes`` every row's ``errors_by_class`` is left empty (one query fewer).
    """
    start, end = filters.utc_bounds(tz)
    if filters.endpoints:
        return _hourly_from_calls(conn, filters, start, end)
    day_zone = _database_day_zone(conn, filters, tz)
    if not by_key and not filters.key_ids:
        return _hourly_from_summaries(conn, filters, tz, day_zone, error_classes)
    h = HourlyUsage
    when = h.hour if day_zone is None else summaries.quota_day_of(h.hour, day_zone)
    group: list[Any] = [when, *([h.key_id] if by_key else []), h.model, h.stream]
    window = [h.hour >= start, h.hour < end, *filters.clauses(h)]
    sums = [func.sum(getattr(h, name)) for name in _SUMMED_COLUMNS]
    weighted = [_weighted_mean(getattr(h, name), h.requests) for name in WEIGHTED_PERCENTILES]
    query = select(*group, *sums, *weighted).where(*window).group_by(*group).order_by(*group)
    errors = _errors_by_class(conn, group, window) if error_classes else {}
    width = len(group)
    rows = []
    for row in conn.execute(query).all():
        head = tuple(row[:width])
        hour, key_id, model, stream = head if by_key else (head[0], ALL_KEYS, *head[1:])
        requests, errors_n, input_, output, total = (int(v) for v in row[width : width + 5])
        rows.append(
            HourRow(
                hour if day_zone is None else day_start(hour, tz),
                key_id,
                model,
                bool(stream),
                requests,
                errors_n,
                errors.get(head, {}),
                input_,
                output,
                total,
                *(_float_or_none(v) for v in row[width + 5 :]),
            )
        )
    return rows


#: ``HourRow.key_id`` of a row summed over keys.
ALL_KEYS: Final = ""
#: The summed figures an HourRow carries, in its order.
_SUMMED_COLUMNS: Final = tuple(n for n in SUMMED_FIGURES if n in HourRow.__dataclass_fields__)


def _weighted_mean(column: Any, weight: Any) -> Any:
    """SQL: the mean of ``column`` weighted by ``weight`` over the rows where it is known."""
    known = func.sum(case((column.is_not(None), weight), else_=0))
    return func.sum(column * weight) / func.nullif(known, 0)


def _database_day_zone(conn: Connection, filters: Filters, tz: tzinfo) -> str | None:
    """The zone name to sum a range charted by day per quota day in SQL, where the database can
    (Postgres, a named zone); ``None``: read hours, and let the caller bucket them."""
    if bucket_for(filters) != "day" or conn.dialect.name != "postgresql":
        return None
    zone = getattr(tz, "key", None)
    return zone if isinstance(zone, str) else None


def _hourly_from_summaries(
    conn: Connection, filters: Filters, tz: tzinfo, day_zone: str | None, error_classes: bool
) -> list[HourRow]:
    """All keys' hours (or days, with ``day_zone``), read from ``usage_by_hour`` and
    ``errors_by_hour`` (one row per hour, model and mode, kept from ``hourly_usage``)."""
    start, end = filters.utc_bounds(tz)
    errors: dict[tuple[Any, ...], dict[str, int]] = defaultdict(dict)
    found = (
        summaries.hour_errors(conn, start, end, filters.models, day_zone=day_zone)
        if error_classes
        else []
    )
    for error in found:
        errors[(error.hour, error.model, bool(error.stream))][error.error_class] = int(error.errors)
    rows = []
    for row in summaries.hour_totals(conn, start, end, filters.models, day_zone=day_zone):
        by_class = errors.get((row.hour, row.model, bool(row.stream)), {})
        rows.append(
            HourRow(
                row.hour if day_zone is None else day_start(row.hour, tz),
                ALL_KEYS,
                row.model,
                bool(row.stream),
                int(row.requests),
                int(row.errors),
                dict(sorted(by_class.items())),
                int(row.input_tokens),
                int(row.output_tokens),
                int(row.total_tokens),
                *(_float_or_none(getattr(row, name)) for name in WEIGHTED_PERCENTILES),
            )
        )
    return rows


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _errors_by_class(
    conn: Connection, group: list[Any], window: list[Any]
) -> dict[tuple[Any, ...], dict[str, int]]:
    """Errors per class per group, from the rows' ``errors_by_class`` documents."""
    h = HourlyUsage
    entries = summaries.json_entries(conn, h.errors_by_class)
    query = (
        select(*group, entries.c.key, func.sum(sql_cast(entries.c.value, BigInteger)))
        .select_from(h)
        .join(entries, true())
        .where(*window)
        .group_by(*group, entries.c.key)
    )
    result: dict[tuple[Any, ...], dict[str, int]] = defaultdict(dict)
    for row in conn.execute(query):
        result[tuple(row[: len(group)])][row[-2]] = int(row[-1])
    return {head: dict(sorted(classes.items())) for head, classes in result.items()}


def _hourly_from_calls(
    conn: Connection, filters: Filters, start: datetime, end: datetime
) -> list[HourRow]:
    c = ApiCall
    query = select(
        c.started_at,
        c.key_id,
        c.model,
        c.stream,
        c.error_type,
        c.latency_ms,
        c.ttft_ms,
        c.input_tokens,
        c.output_tokens,
        c.cache_read_tokens,
        c.reasoning_tokens,
        c.total_tokens,
        c.cache_write_tokens,
        c.api,
    ).where(
        c.started_at >= start,
        c.started_at < end,
        c.key_id.is_not(None),
        *filters.clauses(c),
    )
    groups = group_hourly(CallFacts(*cast(Any, row)) for row in conn.execute(query))
    return [
        HourRow(
            hour=hour,
            key_id=key_id,
            model=model,
            stream=stream,
            requests=t.requests,
            errors=t.errors,
            errors_by_class=t.errors_by_class,
            input_tokens=t.input_tokens,
            output_tokens=t.output_tokens,
            total_tokens=t.total_tokens,
            latency_p50_ms=t.latency_p50_ms,
            latency_p95_ms=t.latency_p95_ms,
            latency_p99_ms=t.latency_p99_ms,
            ttft_p50_ms=t.ttft_p50_ms,
            ttft_p95_ms=t.ttft_p95_ms,
        )
        for (key_id, hour, model, stream), t in sorted(groups.items())
    ]


# --- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DayKeyTokens:
    """One key's quota day: billed tokens against the quota in force that day."""

    day: date
    key_id: str
    total_tokens: int
    input_tokens: int
    output_tokens: int
    requests: int
    errors: int
    quota: int


def daily_key_tokens(
    conn: Connection, filters: Filters, tz: tzinfo, default_quota: int
) -> list[DayKeyTokens]:
    """Tokens per key per quota day in the range, by day then key.

    Read from ``daily_usage``; with a model or endpoint filter, summed from the hourly figures
    (the quota is still the key's whole quota that day).
    """
    if not filters.models and not filters.endpoints:
        d = DailyUsage
        # The columns are selected in DayKeyTokens' order: 100 keys x 90 days is 9,000 rows.
        query = select(*(getattr(d, field.name) for field in fields(DayKeyTokens)))
        query = query.where(d.day >= filters.start, d.day <= filters.end, *filters.clauses(d))
        return [DayKeyTokens(*row) for row in conn.execute(query.order_by(d.day, d.key_id)).all()]
    sums: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for row in hourly_rows(conn, filters, tz, by_key=True):
        figures = sums[(quota_day(row.hour, tz), row.key_id)]
        figures[0] += row.total_tokens
        figures[1] += row.input_tokens
        figures[2] += row.output_tokens
        figures[3] += row.requests
        figures[4] += row.errors
    histories = quota_histories(conn, sorted({key_id for _, key_id in sums}))
    return [
        DayKeyTokens(
            day,
            key_id,
            total,
            inputs,
            outputs,
            requests,
            errors,
            quota=quota_on(histories[key_id], day, default_quota),
        )
        for (day, key_id), (total, inputs, outputs, requests, errors) in sorted(sums.items())
    ]


@dataclass(frozen=True, slots=True)
class ModelTokens:
    bucket: datetime
    model: str
    total_tokens: int
    requests: int


def tokens_by_model(rows: Iterable[HourRow], bucket: Bucket, tz: tzinfo) -> list[ModelTokens]:
    """Billed tokens and requests per bucket per model."""
    sums: dict[tuple[datetime, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in rows:
        figures = sums[(bucket_start(row.hour, bucket, tz), row.model)]
        figures[0] += row.total_tokens
        figures[1] += row.requests
    return [ModelTokens(b, model, t, r) for (b, model), (t, r) in sorted(sums.items())]


@dataclass(frozen=True, slots=True)
class LabelTokens:
    day: date
    value: str
    total_tokens: int
    requests: int


@dataclass(frozen=True, slots=True)
class LabelBreakdown:
    """Billed tokens per quota day per value of one label, and the label names seen."""

    label: str | None
    names: list[str]
    rows: list[LabelTokens]
    scanned: int
    truncated: bool


#: The value shown for calls made without the chosen label.
UNLABELLED: Final = "(none)"


def label_breakdown(
    conn: Connection,
    filters: Filters,
    tz: tzinfo,
    label: str | None = None,
    *,
    limit: int = LABEL_SCAN_LIMIT,
) -> LabelBreakdown:
    """Tokens per day per value of the ``monitor.tags`` label ``label`` (the first name if None).

    Labels are not rolled up, so this reads ``api_calls`` in the range, newest first, at most
    ``limit`` of them; none when no label was seen since the range began (as of the last rollup).
    """
    start, end = filters.utc_bounds(tz)
    if not summaries.seen_values(conn, summaries.LABEL, start):
        return LabelBreakdown(None, [], [], 0, False)
    c = ApiCall
    query = select(
        c.started_at, c.labels, c.error_type, c.total_tokens, c.input_tokens, c.output_tokens
    ).where(c.started_at >= start, c.started_at < end, c.key_id.is_not(None), *filters.clauses(c))
    calls = conn.execute(query.order_by(c.started_at.desc()).limit(limit + 1)).all()
    truncated = len(calls) > limit
    calls = calls[:limit]
    names = sorted({name for call in calls for name in (call.labels or {})})
    chosen = label if label in names else (names[0] if names else None)
    sums: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    if chosen is not None:
        for call in calls:
            value = (call.labels or {}).get(chosen, UNLABELLED)
            facts = CallFacts(
                call.started_at,
                "",
                error_type=call.error_type,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                total_tokens=call.total_tokens,
            )
            figures = sums[(quota_day(call.started_at, tz), value)]
            figures[0] += billed_tokens(facts)
            figures[1] += 1
    rows = [LabelTokens(day, value, t, r) for (day, value), (t, r) in sorted(sums.items())]
    return LabelBreakdown(chosen, names, rows, len(calls), truncated)
