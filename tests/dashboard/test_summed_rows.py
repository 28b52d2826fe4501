"""Chart rows summed over keys in the database equal the per-key rows added up."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from seeding import Seeded

from monitor.config import get_settings
from monitor.queries import Filters, hourly_rows
from monitor.quota_day import quota_day


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
