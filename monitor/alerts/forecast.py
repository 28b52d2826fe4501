"""Pure: when a key will exhaust its daily quota at the rate it is burning tokens now.

The rate is the tokens counted since the start of the *previous* clock hour (from the hourly
rollup: the previous full hour plus the hour in progress), divided by the time since then. That
window is always 60 to 120 minutes long, so it follows the recent pace without jumping on a single
large call, and it needs nothing finer than hourly rows. The window never reaches back before the
quota day began (yesterday's tokens do not count today). With less than
:data:`MIN_OBSERVATION` of today behind it there is no forecast: a burst in the first minutes of
the day says little about the rest of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

MIN_OBSERVATION: Final = timedelta(minutes=10)
HOUR: Final = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Forecast:
    """Tokens per hour over ``since``…now and, if the quota runs out at that rate, when."""

    tokens_per_hour: float
    since: datetime
    exhaust_at: datetime | None


def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def recent_window_start(now: datetime, day_start: datetime) -> datetime:
    """Where the burn-rate window starts: the previous clock hour, or the day's start if later."""
    return max(_hour_floor(now) - HOUR, day_start)


def forecast_exhaustion(
    used: int,
    quota: int,
    hourly: Iterable[tuple[datetime, int]],
    now: datetime,
    day_start: datetime,
) -> Forecast | None:
    """The burn rate from ``hourly`` (``(hour_start_utc, tokens)`` rows) and the exhaustion time.

    ``exhaust_at`` is ``None`` when nothing is being used; the result is ``None`` when there is too
    little of the day behind ``now`` to say.

    >>> from datetime import timezone
    >>> start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    >>> now = start + timedelta(hours=2, minutes=30)
    >>> f = forecast_exhaustion(150_000, 500_000, [(start + HOUR, 150_000)], now, start)
    >>> f.tokens_per_hour, f.exhaust_at - now
    (100000.0, datetime.timedelta(seconds=12600))
    """
    since = recent_window_start(now, day_start)
    elapsed = now - since
    if now - day_start < MIN_OBSERVATION or elapsed <= timedelta(0):
        return None
    # Every hour row overlapping the window counts whole (for a zone whose day starts on the hour,
    # as Beijing's does, rows fall exactly inside the window).
    tokens = sum(t for hour, t in hourly if hour + HOUR > since and hour < now)
    rate = tokens / (elapsed / HOUR)
    if rate <= 0:
        return Forecast(0.0, since, None)
    remaining = max(quota - used, 0)
    return Forecast(rate, since, now + HOUR * (remaining / rate))
