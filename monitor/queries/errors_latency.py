"""Error and latency figures of the dashboard's charts, from the rows of
:func:`monitor.queries.series.hourly_rows`.

Percentiles cannot be added up: where one bucket combines several rows (several keys, or the hours
of a day) the figure shown is their request-weighted mean, which is exact for a single row and a
close, stated approximation otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from monitor.queries.series import Bucket, HourRow, bucket_start
from monitor.store.models import WEIGHTED_PERCENTILES


@dataclass(frozen=True, slots=True)
class ErrorPoint:
    """Failed calls of one class in one bucket, and their share of all the bucket's calls."""

    bucket: datetime
    error_class: str
    errors: int
    requests: int

    @property
    def share(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def error_series(rows: Iterable[HourRow], bucket: Bucket, tz: tzinfo) -> list[ErrorPoint]:
    """Errors by class per bucket; buckets with calls but no errors are left out."""
    requests: dict[datetime, int] = defaultdict(int)
    errors: dict[tuple[datetime, str], int] = defaultdict(int)
    for row in rows:
        b = bucket_start(row.hour, bucket, tz)
        requests[b] += row.requests
        for error_class, count in row.errors_by_class.items():
            errors[(b, error_class)] += count
    return [ErrorPoint(b, cls, n, requests[b]) for (b, cls), n in sorted(errors.items())]


@dataclass(frozen=True, slots=True)
class ErrorTotals:
    requests: int
    errors: int
    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def error_totals(rows: Iterable[HourRow]) -> ErrorTotals:
    """Calls, failed calls and failures by class over all of ``rows``."""
    requests = errors = 0
    by_class: dict[str, int] = defaultdict(int)
    for row in rows:
        requests += row.requests
        errors += row.errors
        for error_class, count in row.errors_by_class.items():
            by_class[error_class] += count
    ordered = dict(sorted(by_class.items(), key=lambda item: (-item[1], item[0])))
    return ErrorTotals(requests, errors, ordered)


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    """Latency and time-to-first-token percentiles (ms) of one model and mode in one bucket."""

    bucket: datetime | None
    model: str
    stream: bool
    requests: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None


def _weighted(rows: Sequence[HourRow], name: str) -> float | None:
    pairs = [(getattr(r, name), r.requests) for r in rows if getattr(r, name) is not None]
    weight = sum(w for _, w in pairs)
    if not pairs or weight <= 0:
        return None
    return float(sum(v * w for v, w in pairs) / weight)


def _combine(
    rows: Sequence[HourRow], bucket: datetime | None, model: str, stream: bool
) -> LatencyPoint:
    return LatencyPoint(
        bucket,
        model,
        stream,
        sum(r.requests for r in rows),
        *(_weighted(rows, name) for name in WEIGHTED_PERCENTILES),
    )


def latency_series(rows: Iterable[HourRow], bucket: Bucket, tz: tzinfo) -> list[LatencyPoint]:
    """Percentiles per bucket per (model, streamed or not)."""
    groups: dict[tuple[datetime, str, bool], list[HourRow]] = defaultdict(list)
    for row in rows:
        groups[(bucket_start(row.hour, bucket, tz), row.model, row.stream)].append(row)
    return [_combine(g, b, m, s) for (b, m, s), g in sorted(groups.items())]


def latency_summary(rows: Iterable[HourRow]) -> list[LatencyPoint]:
    """Percentiles over the whole range per (model, streamed or not); ``bucket`` is None."""
    groups: dict[tuple[str, bool], list[HourRow]] = defaultdict(list)
    for row in rows:
        groups[(row.model, row.stream)].append(row)
    return [_combine(g, None, m, s) for (m, s), g in sorted(groups.items())]
