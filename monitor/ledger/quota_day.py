"""The quota day: the calendar day in ``MONITOR_QUOTA_TZ`` (Asia/Shanghai) that a quota covers.

LongCat resets every key's daily quota at midnight Beijing time. Every function here takes the time
zone explicitly (``settings.tz``) and works on aware instants, so the answer never depends on the
host's clock zone. A day is the half-open interval ``[day_start(d), day_end(d))``.

>>> from datetime import datetime, timezone
>>> from zoneinfo import ZoneInfo
>>> shanghai = ZoneInfo("Asia/Shanghai")
>>> quota_day(datetime(2026, 11, 25, 15, 59, 59, tzinfo=timezone.utc), shanghai)
datetime.date(2026, 11, 25)
>>> quota_day(datetime(2026, 11, 25, 16, 0, 0, tzinfo=timezone.utc), shanghai)
datetime.date(2026, 11, 26)
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo


def _require_aware(instant: datetime) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {instant.isoformat()}")


def quota_day(instant: datetime, tz: tzinfo) -> date:
    """The quota day that ``instant`` (timezone-aware) falls in."""
    _require_aware(instant)
    return instant.astimezone(tz).date()


def day_start(day: date, tz: tzinfo) -> datetime:
    """The UTC instant at which quota day ``day`` begins (local midnight in ``tz``)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def day_end(day: date, tz: tzinfo) -> datetime:
    """The UTC instant at which quota day ``day`` ends: the start of the next day (exclusive)."""
    return day_start(day + timedelta(days=1), tz)


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """``(start, end)`` of quota day ``day`` as UTC instants; ``end`` is exclusive."""
    return day_start(day, tz), day_end(day, tz)


def next_reset(instant: datetime, tz: tzinfo) -> datetime:
    """The UTC instant of the next quota reset strictly after ``instant``."""
    return day_end(quota_day(instant, tz), tz)


def time_until_reset(instant: datetime, tz: tzinfo) -> timedelta:
    """How long from ``instant`` until the quota resets (always > 0, at most one day)."""
    return next_reset(instant, tz) - instant.astimezone(UTC)


def hour_start(instant: datetime) -> datetime:
    """The start of the UTC hour containing ``instant``, as an aware UTC datetime."""
    _require_aware(instant)
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def parse_day(text: str) -> date:
    """A quota day written ``YYYY-MM-DD``; :class:`ValueError` with a clear message otherwise."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"expected a date as YYYY-MM-DD, got {text!r}") from None
