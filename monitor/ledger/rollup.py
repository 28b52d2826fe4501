"""Daily and hourly totals of ``api_calls``: the pure arithmetic, and the job that writes them.

What counts toward the quota: the tokens of every call whose ``error_type`` is not in
:data:`~monitor.records.UNBILLED_ERROR_TYPES` (LongCat does not bill 401/403/429/5xx, timeouts,
dropped connections). Such calls still count as requests and errors. A call's tokens are its
``total_tokens``, or ``input + output`` when only those were recorded. Calls without a ``key_id``
belong to no quota and are left out.

The job (:func:`run_rollup`) is incremental and idempotent. A first run aggregates every
``(key, UTC hour, model, stream)`` group straight from ``api_calls``, an hour per query
(:mod:`monitor.store.rollups`). The last hours, from the one the next tick starts in, are also
kept as five-minute slices (:mod:`monitor.store.slices`). A tick recounts the calls of each slice
from the one holding the watermark less a late-arrival window, recomputes only the slices whose
count changed (calls are only ever added), and rebuilds their hours by adding up slices; each
quota day those hours belong to is then re-derived from its hourly rows (SQL sums), never from a
day of raw calls. Running it twice gives the same rows, a tick gives the rows a full recompute
gives, and the totals always equal the sums over ``api_calls``. Runs take turns on Postgres (a
transaction advisory lock), so a deposed leader running at the same time starts from what the
other one wrote. A quota time zone whose midnight is not a whole UTC hour (Asia/Kolkata) cannot
build days from hours: its days are aggregated from their raw calls instead (correct, and
slower).

Percentiles in the tables come from log-spaced histograms kept per hourly row
(:mod:`monitor.histogram`: within 5 % on smooth distributions, a 28 % bucket at worst), so a day's
percentiles are merged from its hours. :func:`summarize` and :func:`percentile` compute exact
ones (linear interpolation between closest ranks, as SQL ``percentile_cont``) for small groups
held in memory, such as the dashboard's hour in progress.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Final, cast

from monitor import histogram
from monitor.quota_day import day_bounds, hour_start, quota_day
from monitor.records import UNBILLED_ERROR_TYPES

if TYPE_CHECKING:
    from sqlalchemy import Connection, Table
    from sqlalchemy.engine import Engine

    from monitor.config import Settings

#: Calls started this long before the watermark are looked at again, so late writes are folded in.
DEFAULT_LATE_WINDOW: Final = timedelta(minutes=10)
#: The ``rollup_state`` row holding this job's watermark.
ROLLUP_NAME: Final = "usage"
#: The ``rollup_state`` row where retention records its cut-off (:mod:`monitor.retention`): raw
#: calls before it are gone, so a day starting before it is never recomputed (it would undercount).
RETENTION_NAME: Final = "retention"
HOUR: Final = timedelta(hours=1)
#: Width of the slices a tick recomputes (:mod:`monitor.store.slices`) instead of whole hours.
SLICE: Final = timedelta(minutes=5)
#: The ``rollup_state`` row holding where the kept slices begin (every slice from there on is
#: up to date with the calls seen by the last run).
SLICES_NAME: Final = "usage_slices"


@dataclass(frozen=True, slots=True)
class CallFacts:
    """The columns of one ``api_calls`` row that the rollups read (``started_at`` aware UTC)."""

    started_at: datetime
    key_id: str
    model: str | None = None
    stream: bool = False
    error_type: str | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    reasoning_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(slots=True)
class Totals:
    """The figures of one group of calls (a key's quota day, or a key's hour/model/stream).

    Token fields count only calls that count toward the quota; ``requests`` and ``errors``
    count every call. Percentiles are ``None`` when the group has no such measurement.
    """

    requests: int = 0
    errors: int = 0
    errors_by_class: dict[str, int] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    latency_min_ms: float | None = None
    latency_max_ms: float | None = None
    ttft_min_ms: float | None = None
    ttft_max_ms: float | None = None
    latency_histogram: list[int] = field(default_factory=lambda: [0] * histogram.BUCKETS)
    ttft_histogram: list[int] = field(default_factory=lambda: [0] * histogram.BUCKETS)


def finish(totals: Totals) -> Totals:
    """Set the percentiles of ``totals`` from its histograms (:mod:`monitor.histogram`)."""
    latency = totals.latency_histogram
    low, high = totals.latency_min_ms, totals.latency_max_ms
    totals.latency_p50_ms = histogram.percentile_of(latency, 0.50, low=low, high=high)
    totals.latency_p95_ms = histogram.percentile_of(latency, 0.95, low=low, high=high)
    totals.latency_p99_ms = histogram.percentile_of(latency, 0.99, low=low, high=high)
    ttft = totals.ttft_histogram
    low, high = totals.ttft_min_ms, totals.ttft_max_ms
    totals.ttft_p50_ms = histogram.percentile_of(ttft, 0.50, low=low, high=high)
    totals.ttft_p95_ms = histogram.percentile_of(ttft, 0.95, low=low, high=high)
    return totals


def add_totals(totals: Totals, other: Totals) -> Totals:
    """Add the figures and histograms of ``other`` (calls of the same group, not in
    ``totals``) into ``totals``; percentiles are left for :func:`finish`."""
    totals.requests += other.requests
    totals.errors += other.errors
    by_class = Counter(totals.errors_by_class)
    by_class.update(other.errors_by_class)
    totals.errors_by_class = dict(sorted(by_class.items()))
    totals.input_tokens += other.input_tokens
    totals.output_tokens += other.output_tokens
    totals.cache_read_tokens += other.cache_read_tokens
    totals.reasoning_tokens += other.reasoning_tokens
    totals.total_tokens += other.total_tokens
    totals.latency_min_ms = _least(totals.latency_min_ms, other.latency_min_ms)
    totals.latency_max_ms = _greatest(totals.latency_max_ms, other.latency_max_ms)
    totals.ttft_min_ms = _least(totals.ttft_min_ms, other.ttft_min_ms)
    totals.ttft_max_ms = _greatest(totals.ttft_max_ms, other.ttft_max_ms)
    totals.latency_histogram = [
        a + b for a, b in zip(totals.latency_histogram, other.latency_histogram, strict=True)
    ]
    totals.ttft_histogram = [
        a + b for a, b in zip(totals.ttft_histogram, other.ttft_histogram, strict=True)
    ]
    return totals


def _least(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


DailyKey = tuple[str, date]
"""``(key_id, quota day)``"""
HourlyKey = tuple[str, datetime, str, bool]
"""``(key_id, UTC hour start, model or '', stream)``"""


def counts_toward_quota(error_type: str | None) -> bool:
    """Whether a call with this ``error_type`` is billed (its tokens count toward the quota).

    >>> counts_toward_quota(None), counts_toward_quota("rate_limit")
    (True, False)
    """
    return error_type not in UNBILLED_ERROR_TYPES


def billed_tokens(call: CallFacts) -> int:
    """The tokens ``call`` adds to its key's quota usage."""
    if not counts_toward_quota(call.error_type):
        return 0
    if call.total_tokens is not None:
        return call.total_tokens
    return (call.input_tokens or 0) + (call.output_tokens or 0)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-quantile (0 ≤ q ≤ 1) of ``values`` by linear interpolation; ``None`` if empty.

    >>> percentile([10, 20, 30, 40], 0.5)
    25.0
    """
    if not 0 <= q <= 1:
        raise ValueError(f"expected a quantile between 0 and 1, got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = math.ceil(rank)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def summarize(calls: Iterable[CallFacts]) -> Totals:
    """The :class:`Totals` of a group of calls."""
    totals = Totals()
    by_class: Counter[str] = Counter()
    latencies: list[float] = []
    ttfts: list[float] = []
    for call in calls:
        totals.requests += 1
        if call.error_type is not None:
            totals.errors += 1
            by_class[call.error_type] += 1
        if call.latency_ms is not None:
            latencies.append(call.latency_ms)
        if call.ttft_ms is not None:
            ttfts.append(call.ttft_ms)
        if counts_toward_quota(call.error_type):
            totals.input_tokens += call.input_tokens or 0
            totals.output_tokens += call.output_tokens or 0
            totals.cache_read_tokens += call.cache_read_tokens or 0
            totals.reasoning_tokens += call.reasoning_tokens or 0
            totals.total_tokens += billed_tokens(call)
    totals.errors_by_class = dict(sorted(by_class.items()))
    totals.latency_histogram = histogram.histogram_of(latencies)
    totals.ttft_histogram = histogram.histogram_of(ttfts)
    totals.latency_min_ms = min(latencies, default=None)
    totals.latency_max_ms = max(latencies, default=None)
    totals.ttft_min_ms = min(ttfts, default=None)
    totals.ttft_max_ms = max(ttfts, default=None)
    totals.latency_p50_ms = percentile(latencies, 0.50)
    totals.latency_p95_ms = percentile(latencies, 0.95)
    totals.latency_p99_ms = percentile(latencies, 0.99)
    totals.ttft_p50_ms = percentile(ttfts, 0.50)
    totals.ttft_p95_ms = percentile(ttfts, 0.95)
    return totals


def daily_key(call: CallFacts, tz: tzinfo) -> DailyKey:
    return call.key_id, quota_day(call.started_at, tz)


def hourly_key(call: CallFacts) -> HourlyKey:
    return call.key_id, hour_start(call.started_at), call.model or "", call.stream


def group_daily(calls: Iterable[CallFacts], tz: tzinfo) -> dict[DailyKey, Totals]:
    """Totals per ``(key_id, quota day)``."""
    groups: defaultdict[DailyKey, list[CallFacts]] = defaultdict(list)
    for call in calls:
        groups[daily_key(call, tz)].append(call)
    return {key: summarize(group) for key, group in groups.items()}


def group_hourly(calls: Iterable[CallFacts]) -> dict[HourlyKey, Totals]:
    """Totals per ``(key_id, UTC hour, model, stream)``."""
    groups: defaultdict[HourlyKey, list[CallFacts]] = defaultdict(list)
    for call in calls:
        groups[hourly_key(call)].append(call)
    return {key: summarize(group) for key, group in groups.items()}


def slice_start(instant: datetime) -> datetime:
    """The start of the :data:`SLICE` (five UTC minutes) containing ``instant``.

    >>> slice_start(datetime(2026, 11, 25, 15, 59, 59, tzinfo=UTC))
    datetime.datetime(2026, 11, 25, 15, 55, tzinfo=datetime.timezone.utc)
    """
    hour = hour_start(instant)
    return hour + SLICE * ((instant.astimezone(UTC) - hour) // SLICE)


def recompute_span(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The UTC range to read to recompute quota day ``day`` and every UTC hour overlapping it.

    Whole-hour zones (Asia/Shanghai) give exactly the day; a half-hour zone widens it to the hour.
    """
    start, end = day_bounds(day, tz)
    first_hour = hour_start(start)
    last_hour = hour_start(end)
    return first_hour, last_hour if last_hour == end else last_hour + HOUR


@dataclass(frozen=True, slots=True)
class RollupResult:
    """What one :func:`run_rollup` pass did.

    ``scanned``: calls read to find the changed groups; ``days`` and ``hours``: ``daily_usage`` and
    ``hourly_usage`` rows written; ``quotas_updated``: daily rows whose quota changed.
    """

    scanned: int
    days: int
    hours: int
    quotas_updated: int
    since: datetime | None
    watermark: datetime


def run_rollup(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    *,
    late_window: timedelta = DEFAULT_LATE_WINDOW,
) -> RollupResult:
    """Bring ``daily_usage`` and ``hourly_usage`` up to date with ``api_calls``; one transaction.

    >>> result = run_rollup(engine, get_settings())  # doctest: +SKIP
    >>> result.days, result.watermark  # doctest: +SKIP
    (3, datetime.datetime(2026, 11, 25, 16, 1, tzinfo=datetime.timezone.utc))
    """
    from monitor.store import rollups, slices, summaries, usage
    from monitor.store.keys import quotas_for

    now = (now or datetime.now(UTC)).astimezone(UTC)
    tz = settings.tz
    with engine.begin() as conn:
        rollups.prepare(conn)
        marks = usage.get_watermarks(conn, ROLLUP_NAME, RETENTION_NAME, SLICES_NAME)
        watermark = marks[ROLLUP_NAME]
        since = None if watermark is None else watermark - late_window
        start = None if since is None else hour_start(since)
        retained_from = marks[RETENTION_NAME]
        if retained_from is not None:  # never recompute an hour whose calls are partly gone
            first_whole = hour_start(retained_from)
            if first_whole < retained_from:
                first_whole += HOUR
            start = first_whole if start is None else max(start, first_whole)
        new_watermark = max(now, watermark) if watermark is not None else now
        next_start = hour_start(new_watermark - late_window)
        pass_ = _recompute_hours(conn, since, start, next_start, marks[SLICES_NAME])
        scanned, hourly, sliced_from = pass_.scanned, pass_.hourly, pass_.sliced_from
        if hourly:
            for totals in hourly.values():
                finish(totals)
            rollups.write_hourly(conn, hourly, now=now, whole_hours=pass_.hours)
            if pass_.hours is None:
                summaries.refresh_summaries(conn, start, calls_since=since)
            else:
                summaries.refresh_hours(conn, pass_.hours)
        if pass_.seen_in:
            summaries.note_seen_between(conn, pass_.seen_in)
        days = _days_of(hourly, tz)
        if retained_from is not None:  # a late call for a day partly past retention: keep the row
            days = {d: k for d, k in days.items() if recompute_span(d, tz)[0] >= retained_from}
        written: list[tuple[str, date, Totals, int]] = []
        for day, key_ids in sorted(days.items()):
            day_start, day_end = day_bounds(day, tz)
            if day_start == hour_start(day_start) and day_end == hour_start(day_end):
                daily = rollups.daily_from_hours(conn, day_start, day_end, sorted(key_ids))
            else:
                daily = rollups.aggregate_calls(
                    conn, day_start, day_end, hourly=False, key_ids=sorted(key_ids)
                )
            quotas = quotas_for(conn, sorted(daily), day, settings.default_quota)
            for key_id, totals in sorted(daily.items()):
                written.append((key_id, day, finish(totals), quotas[key_id]))
        rollups.write_daily(conn, written, now=now)
        quotas_updated = usage.refresh_daily_quotas(conn, settings.default_quota)
        kept_from = marks[SLICES_NAME]
        if kept_from is None or sliced_from > kept_from:  # else no slice lies before it
            slices.delete_slices_before(conn, sliced_from)
        if sliced_from != kept_from:
            usage.set_watermark(conn, SLICES_NAME, sliced_from, now=now)
        usage.advance_watermark(conn, ROLLUP_NAME, new_watermark, now=now)
    return RollupResult(
        scanned=scanned,
        days=len(written),
        hours=len(hourly),
        quotas_updated=quotas_updated,
        since=since,
        watermark=new_watermark,
    )


@dataclass(frozen=True, slots=True)
class _Pass:
    """What :func:`_recompute_hours` did: the calls looked at, the groups recomputed, where the
    kept slices begin from now on; for a tick, the hours whose every group was recomputed and
    the spans whose calls' endpoints and label names are to be noted (a first run: ``None``,
    its hours are upserted and every call from its start is noted)."""

    scanned: int
    hourly: dict[HourlyKey, Totals]
    sliced_from: datetime
    hours: list[datetime] | None
    seen_in: list[tuple[datetime, datetime]] | None


def _recompute_hours(
    conn: Connection,
    since: datetime | None,
    start: datetime | None,
    next_start: datetime,
    sliced_from: datetime | None,
) -> _Pass:
    """Recompute the hourly groups that calls from ``since`` on may have changed.

    A tick (slices kept from ``start`` or before) recounts the calls of each slice from the one
    holding ``since``, recomputes the slices whose count changed, and adds up their hours from
    slices; only the calls of those slices (and of slices holding calls without a key, which no
    count covers) can be new to the rollup. Otherwise (a first run, or slices not kept that far
    back) hours before ``next_start``, where the next tick's hours begin, come straight from
    ``api_calls`` in one scan, and the slices from there on are rebuilt.
    """
    from monitor.store import rollups, slices
    from monitor.store.models import UsageSlice

    table = cast("Table", UsageSlice.__table__)
    hourly: dict[HourlyKey, Totals] = {}
    if since is not None and start is not None and sliced_from is not None and sliced_from <= start:
        counts = slices.changed_slices(conn, max(slice_start(since), start), since)
        for first, end in slices.runs_of(counts.changed):
            for group, totals in slices.write_slices(conn, first, end, hours=True).items():
                hourly[group] = add_totals(hourly[group], totals) if group in hourly else totals
        hours = sorted({hour_start(s) for s in counts.changed})
        for hour in hours:  # the slices of these hours that kept their calls
            kept = rollups.sum_rows(
                conn, table, hour, hour + HOUR, by_hour=True, excluding=counts.changed
            )
            for group, totals in kept.items():
                hourly[group] = add_totals(hourly[group], totals) if group in hourly else totals
        seen_in = slices.runs_of(sorted({*counts.changed, *counts.keyless}))
        return _Pass(counts.scanned, hourly, max(sliced_from, next_start), hours, seen_in)
    cut = next_start if start is None else max(next_start, start)
    if start is None or start < cut:  # the slices are written while the hours are aggregated
        hourly.update(
            rollups.aggregate_hours(conn, start, cut, lambda: slices.write_slices(conn, cut))
        )
    else:
        slices.write_slices(conn, cut)
    hourly.update(rollups.sum_rows(conn, table, cut, None, by_hour=True))
    if since is None:
        scanned = sum(totals.requests for totals in hourly.values())
    else:
        scanned = rollups.count_calls_since(conn, since)
    return _Pass(scanned, hourly, cut, None, None)


def _days_of(hourly: Iterable[HourlyKey], tz: tzinfo) -> dict[date, set[str]]:
    """The quota days (and their keys) that the recomputed hours fall in."""
    days: defaultdict[date, set[str]] = defaultdict(set)
    for key_id, hour, _model, _stream in hourly:
        days[quota_day(hour, tz)].add(key_id)
        days[quota_day(hour + HOUR - timedelta(microseconds=1), tz)].add(key_id)
    return days
