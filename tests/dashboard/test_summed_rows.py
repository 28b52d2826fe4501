"""Chart rows summed over keys in the database equal the per-key rows added up."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from typing import Any

from seeding import Seeded

from monitor.config import get_settings
from monitor.ledger.quota_day import day_bounds, quota_day
from monitor.queries import Filters, bucket_for, error_totals, hourly_rows, tokens_by_model


def test_rows_summed_over_keys_match_the_per_key_rows(seeded: Seeded) -> None:
    tz = get_settings().tz
    filters = Filters.last_days(7, quota_day(seeded.now, tz))
    with seeded.engine.connect() as conn:
        summed = hourly_rows(conn, filters, tz)
        per_key = hourly_rows(conn, filters, tz, by_key=True)
    expected: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, Counter()])
    for row in per_key:
        figures = expected[(row.hour, row.model, row.stream)]
        figures[0] += row.requests
        figures[1] += row.errors
        figures[2] += row.total_tokens
        figures[3].update(row.errors_by_class)
    assert len({r.key_id for r in per_key}) > 1  # several keys were really summed
    assert {r.key_id for r in summed} == {""}
    assert {
        (r.hour, r.model, r.stream): [
            r.requests,
            r.errors,
            r.total_tokens,
            Counter(r.errors_by_class),
        ]
        for r in summed
    } == dict(expected)


def test_a_range_charted_by_day_adds_up_to_the_calls_of_each_quota_day(seeded: Seeded) -> None:
    tz = get_settings().tz
    today = quota_day(seeded.now, tz)
    filters = Filters.last_days(30, today)
    assert bucket_for(filters) == "day"
    with seeded.engine.connect() as conn:
        rows = hourly_rows(conn, filters, tz)
        keyed = hourly_rows(conn, filters, tz, by_key=True)
    tokens: dict[date, int] = defaultdict(int)
    for point in tokens_by_model(rows, "day", tz):
        tokens[quota_day(point.bucket, tz)] += point.total_tokens
    days_with_calls = [day for day in tokens if tokens[day]]
    assert len(days_with_calls) > 3
    for day in sorted(tokens):
        start, end = day_bounds(day, tz)
        assert tokens[day] == seeded.billed(start, end), day
    start, end = seeded.range_bounds(30)
    failed = seeded.scalar(
        "SELECT COUNT(*) FROM api_calls WHERE started_at >= :start AND started_at < :end "
        "AND key_id IS NOT NULL AND error_type IS NOT NULL",
        start=start,
        end=end,
    )
    assert error_totals(rows).errors == failed == error_totals(keyed).errors
    assert sum(error_totals(rows).by_class.values()) == failed
    assert error_totals(rows).requests == seeded.count(start, end)
