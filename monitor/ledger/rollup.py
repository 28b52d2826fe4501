"""The rollup job: bring ``daily_usage`` and ``hourly_usage`` up to date with ``api_calls``.

The arithmetic it applies (what a call adds to the quota, how groups add up) is
:mod:`monitor.ledger.totals`; this module decides what to recompute and writes it.

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
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Final, cast

from monitor.ledger import costing
from monitor.ledger.quota_day import day_bounds, hour_start, quota_day
from monitor.ledger.totals import (
    HOUR,
    HourlyKey,
    Totals,
    add_totals,
    finish,
    recompute_span,
    slice_start,
)
from monitor.store import key_usage, rollups, slices, summaries, watermarks
from monitor.store.keys import quotas_for
from monitor.store.models import UsageSlice

if TYPE_CHECKING:
    from sqlalchemy import Connection, Table
    from sqlalchemy.engine import Engine

    from monitor.config import Settings

#: Calls started this long before the watermark are looked at again, so late writes are folded in.
DEFAULT_LATE_WINDOW: Final = timedelta(minutes=10)
#: The ``rollup_state`` row holding this job's watermark.
ROLLUP_NAME: Final = "usage"
#: The ``rollup_state`` row where retention records its cut-off (:mod:`monitor.ledger.retention`):
#: raw calls before it are gone, so a day starting before it is never recomputed (it would
#: undercount).
RETENTION_NAME: Final = "retention"
#: The ``rollup_state`` row holding where the kept slices begin (every slice from there on is
#: up to date with the calls seen by the last run).
SLICES_NAME: Final = "usage_slices"


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
    now = (now or datetime.now(UTC)).astimezone(UTC)
    tz = settings.tz
    with engine.begin() as conn:
        rollups.prepare(conn)
        marks = watermarks.get_watermarks(conn, ROLLUP_NAME, RETENTION_NAME, SLICES_NAME)
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
        costing.price_days(conn, settings, days)
        quotas_updated = key_usage.refresh_daily_quotas(conn, settings.default_quota)
        kept_from = marks[SLICES_NAME]
        if kept_from is None or sliced_from > kept_from:  # else no slice lies before it
            slices.delete_slices_before(conn, sliced_from)
        if sliced_from != kept_from:
            watermarks.set_watermark(conn, SLICES_NAME, sliced_from, now=now)
        watermarks.advance_watermark(conn, ROLLUP_NAME, new_watermark, now=now)
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
