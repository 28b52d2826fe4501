from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from monitor.ledger.quota_day import (
    day_bounds,
    day_end,
    day_start,
    hour_start,
    next_reset,
    parse_day,
    quota_day,
    time_until_reset,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_last_second_of_a_beijing_day_belongs_to_that_day() -> None:
    assert quota_day(utc(2026, 11, 25, 15, 59, 59), SHANGHAI) == date(2026, 11, 25)


def test_beijing_midnight_starts_the_next_day() -> None:
    assert quota_day(utc(2026, 11, 25, 16, 0, 0), SHANGHAI) == date(2026, 11, 26)


def test_the_same_instant_in_another_offset_gives_the_same_day() -> None:
    new_york = timezone(timedelta(hours=-5))
    instant = datetime(2026, 11, 25, 11, 0, 0, tzinfo=new_york)  # 16:00Z = 00:00 Beijing
    assert quota_day(instant, SHANGHAI) == date(2026, 11, 26)


def test_day_bounds_are_beijing_midnights_in_utc() -> None:
    start, end = day_bounds(date(2026, 11, 26), SHANGHAI)
    assert start == utc(2026, 11, 25, 16)
    assert end == utc(2026, 11, 26, 16)
    assert start.tzinfo is UTC
    assert day_start(date(2026, 11, 26), SHANGHAI) == start
    assert day_end(date(2026, 11, 26), SHANGHAI) == end


def test_every_day_of_a_year_is_24_hours_in_beijing() -> None:
    day = date(2026, 1, 1)
    while day.year == 2026:
        start, end = day_bounds(day, SHANGHAI)
        assert end - start == timedelta(hours=24)
        day += timedelta(days=1)


def test_time_until_reset() -> None:
    assert time_until_reset(utc(2026, 11, 25, 15, 59, 59), SHANGHAI) == timedelta(seconds=1)
    assert time_until_reset(utc(2026, 11, 25, 16, 0, 0), SHANGHAI) == timedelta(hours=24)
    assert next_reset(utc(2026, 11, 25, 4, 30), SHANGHAI) == utc(2026, 11, 25, 16)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        quota_day(datetime(2026, 11, 25, 12), SHANGHAI)


def test_hour_start_is_utc() -> None:
    beijing = datetime(2026, 11, 26, 0, 42, 7, 5, tzinfo=SHANGHAI)
    assert hour_start(beijing) == utc(2026, 11, 25, 16)


def test_parse_day() -> None:
    assert parse_day("2026-11-25") == date(2026, 11, 25)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_day("25/11/2026")
