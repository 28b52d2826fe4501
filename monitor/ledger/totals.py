"""The pure arithmetic of usage totals: what a call adds to its key's quota, the figures of a
group of calls, adding groups together, and the hour and five-minute slices totals are kept in.

What counts toward the quota: the tokens of every call whose ``error_type`` is not in
:data:`~monitor.records.UNBILLED_ERROR_TYPES` (LongCat does not bill 401/402/403/429/5xx,
timeouts, dropped connections). Such calls still count as requests and errors. A call's tokens are
its ``total_tokens``, or ``input + output`` when only those were recorded. Calls without a
``key_id`` belong to no quota and are left out.

Percentiles in the rollup tables come from log-spaced histograms (:mod:`monitor.ledger.histogram`);
:func:`summarize` and :func:`percentile` compute exact ones (linear interpolation between closest
ranks, as SQL ``percentile_cont``) for small groups held in memory, such as the dashboard's hour in
progress. Nothing here reads or writes a database.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Final

from monitor.ledger import histogram
from monitor.ledger.prices import TokenSplit, split_tokens
from monitor.ledger.quota_day import day_bounds, hour_start, quota_day
from monitor.records import UNBILLED_ERROR_TYPES

HOUR: Final = timedelta(hours=1)
#: Width of the slices a tick recomputes (:mod:`monitor.store.slices`) instead of whole hours.
SLICE: Final = timedelta(minutes=5)


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
    cache_write_tokens: int | None = None
    api: str = "openai"


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
    uncached_input_tokens: int = 0
    cached_input_tokens: int = 0
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
    """Set the percentiles of ``totals`` from its histograms (:mod:`monitor.ledger.histogram`)."""
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
    totals.uncached_input_tokens += other.uncached_input_tokens
    totals.cached_input_tokens += other.cached_input_tokens
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


def split_of(call: CallFacts) -> TokenSplit:
    """``call``'s tokens as they are priced (:func:`monitor.ledger.prices.split_tokens`)."""
    return split_tokens(
        call.api,
        call.input_tokens,
        call.output_tokens,
        call.cache_read_tokens,
        call.cache_write_tokens,
    )


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
            split = split_of(call)
            totals.uncached_input_tokens += split.uncached_input
            totals.cached_input_tokens += split.cached_input
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
