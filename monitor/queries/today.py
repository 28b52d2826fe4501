"""Where every key stands today: used against quota, time to reset, burn-down and forecast.

Read from ``daily_usage`` and ``hourly_usage`` (as of the last rollup); the forecast is
:func:`monitor.alerts.forecast.forecast_exhaustion`, the same one the alert rules use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo

from sqlalchemy import Connection

from monitor.alerts.forecast import Forecast, forecast_exhaustion
from monitor.ledger.charges import Charge
from monitor.ledger.quota_day import day_end, day_start, quota_day
from monitor.queries.filters import RollupFreshness, rollup_freshness
from monitor.store.billing import day_charges
from monitor.store.key_usage import KeyDayUsage, hourly_tokens_by_key, key_usage_for_day

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class BurnPoint:
    """Tokens used since the day began, as of ``at`` (UTC; the end of an hour, or now)."""

    at: datetime
    used: int


@dataclass(frozen=True, slots=True)
class KeyToday:
    """One key's quota day so far."""

    usage: KeyDayUsage
    forecast: Forecast | None
    burn: list[BurnPoint]
    #: Free quota used, paid tokens and their cost today (as of the last rollup).
    charge: Charge = field(default_factory=Charge)

    @property
    def remaining(self) -> int:
        return max(self.usage.quota - self.usage.total_tokens, 0)

    @property
    def error_rate(self) -> float:
        return self.usage.errors / self.usage.requests if self.usage.requests else 0.0

    @property
    def exhausted(self) -> bool:
        return self.usage.total_tokens >= self.usage.quota

    def exhaust_before(self, reset_at: datetime) -> datetime | None:
        """When the quota runs out at the current pace, if that is before the reset."""
        if self.exhausted or self.forecast is None or self.forecast.exhaust_at is None:
            return None
        return self.forecast.exhaust_at if self.forecast.exhaust_at < reset_at else None


@dataclass(frozen=True, slots=True)
class TodayOverview:
    day: date
    now: datetime
    day_start: datetime
    reset_at: datetime
    keys: list[KeyToday]
    freshness: RollupFreshness
    currency: str = "USD"

    @property
    def requests(self) -> int:
        return sum(k.usage.requests for k in self.keys)

    @property
    def errors(self) -> int:
        return sum(k.usage.errors for k in self.keys)

    @property
    def total_tokens(self) -> int:
        return sum(k.usage.total_tokens for k in self.keys)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def cost(self) -> int:
        """Today's cost past the free quotas, in nano-units of :attr:`currency`."""
        return sum(k.charge.cost for k in self.keys)

    @property
    def until_reset(self) -> timedelta:
        return self.reset_at - self.now


def burn_points(
    hourly: Sequence[tuple[datetime, int]], start: datetime, now: datetime
) -> list[BurnPoint]:
    """Cumulative usage from ``start`` (0) through the end of each hour with calls, up to now."""
    points = [BurnPoint(start, 0)]
    used = 0
    for hour, tokens in sorted(hourly):
        used += tokens
        points.append(BurnPoint(min(hour + HOUR, now), used))
    return points


def today_overview(
    conn: Connection,
    *,
    tz: tzinfo,
    default_quota: int,
    now: datetime | None = None,
    key_ids: Sequence[str] = (),
    currency: str = "USD",
) -> TodayOverview:
    """Every key (or the ``key_ids`` given) on today's quota day.

    Keys with neither calls today nor a registration are left out.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    today = quota_day(now, tz)
    start, reset = day_start(today, tz), day_end(today, tz)
    wanted = set(key_ids)
    usages = [
        usage
        for usage in key_usage_for_day(conn, today, default_quota=default_quota)
        if not wanted or usage.key_id in wanted
    ]
    hours = hourly_tokens_by_key(conn, [usage.key_id for usage in usages], start)
    charges = day_charges(conn, today)
    keys: list[KeyToday] = []
    for usage in usages:
        hourly = hours[usage.key_id]
        forecast = forecast_exhaustion(usage.total_tokens, usage.quota, hourly, now, start)
        charge = charges.get(usage.key_id, Charge())
        keys.append(KeyToday(usage, forecast, burn_points(hourly, start, now), charge))
    return TodayOverview(today, now, start, reset, keys, rollup_freshness(conn), currency)
