"""Price quota days: the charges of ``hourly_usage`` and ``daily_usage``, off the callers' path.

The rollup (:mod:`monitor.ledger.rollup`) calls :func:`price_days` for the days it recomputed,
in its transaction; ``longcat-monitor prices set`` and ``keys set-quota`` call
:func:`reprice_from` so that the days a correction reaches are charged again. For each quota
group (a pool, or a key alone) and day this module puts the day's billed calls in time order as
:class:`~monitor.ledger.charges.Portion` s (whole hourly groups, except around the call that
crosses the free quota) and lets :func:`monitor.ledger.charges.charge_day` decide what is free
and what is paid, at the prices in force that day in the deployment's currency.

In a time zone whose midnight is not a whole UTC hour, an hourly row spans two quota days: the
days are charged from their calls and the hourly rows carry no charges. When the calls of the
hour holding the crossing are gone (retention), its groups are taken whole, in their order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING

from sqlalchemy import select

from monitor.ledger.charges import Charge, Portion, charge_day, crossing_index
from monitor.ledger.prices import PriceEntry, cost_of, price_on
from monitor.ledger.quota_day import day_bounds, hour_start
from monitor.ledger.totals import HOUR, HourlyKey
from monitor.store import costs
from monitor.store.costs import GroupTokens
from monitor.store.models import DailyUsage
from monitor.store.pools import QuotaGroup, quota_groups
from monitor.store.prices import price_table

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from monitor.config import Settings

__all__ = ["price_days", "reprice_from"]


def price_days(conn: Connection, settings: Settings, days: Mapping[date, Iterable[str]]) -> int:
    """Charge each quota day of ``days`` for the quota groups of its keys; groups charged."""
    table = price_table(conn)
    charged = 0
    for day, key_ids in sorted(days.items()):
        for group in quota_groups(conn, sorted(set(key_ids)), day, settings.default_quota):
            _charge_group(conn, group, day, table, settings.currency, settings.tz)
            charged += 1
    return charged


def reprice_from(conn: Connection, settings: Settings, first_day: date) -> int:
    """Charge again every rolled-up day from ``first_day`` on (after a price or quota change)."""
    rows = conn.execute(
        select(DailyUsage.day, DailyUsage.key_id).where(DailyUsage.day >= first_day)
    ).all()
    days: dict[date, set[str]] = {}
    for day, key_id in rows:
        days.setdefault(day, set()).add(key_id)
    return price_days(conn, settings, days)


def _charge_group(
    conn: Connection,
    group: QuotaGroup,
    day: date,
    table: Sequence[PriceEntry],
    currency: str,
    tz: tzinfo,
) -> None:
    @functools.cache
    def entry(model: str) -> PriceEntry | None:
        return price_on(table, model, currency, day)

    def portion(part: GroupTokens) -> Portion[HourlyKey]:
        found = entry(part.group[2])
        cost = None if found is None else cost_of(part.split, found.rates)
        return Portion(part.group, part.tokens, cost)

    start, end = day_bounds(day, tz)
    keys = list(group.key_ids)
    whole_hours = start == hour_start(start) and end == hour_start(end)
    if whole_hours:
        parts = _in_order(conn, keys, start, end, group.quota)
    else:
        parts = [part for _, part in costs.ordered_parts(conn, keys, start, end, group.quota)]
    charges = charge_day((portion(part) for part in parts), group.quota)
    if whole_hours:
        costs.write_hourly_charges(conn, keys, start, end, charges)
    per_key = {key_id: Charge() for key_id in keys}
    for (key_id, *_), charge in charges.items():
        total = per_key[key_id]
        total.free_tokens += charge.free_tokens
        total.paid_tokens += charge.paid_tokens
        total.cost += charge.cost
        total.unpriced_tokens += charge.unpriced_tokens
    costs.write_daily_charges(conn, day, per_key, currency)


def _in_order(
    conn: Connection, keys: list[str], start: datetime, end: datetime, quota: int
) -> list[GroupTokens]:
    """The day's hourly groups in time order, the hour crossing ``quota`` cut around the call
    that crosses it."""
    rows = costs.hour_groups(conn, keys, start, end)
    hours = sorted({row.group[1] for row in rows})
    per_hour = [sum(row.tokens for row in rows if row.group[1] == hour) for hour in hours]
    crossing = crossing_index(per_hour, quota)
    if crossing is None:
        return rows
    hour = hours[crossing]
    used = sum(per_hour[:crossing])
    cut = costs.ordered_parts(conn, keys, hour, hour + HOUR, quota - used)
    if sum(part.tokens for _, part in cut) != per_hour[crossing]:  # calls gone: whole groups
        return rows
    return [
        *(row for row in rows if row.group[1] < hour),
        *(part for _, part in cut),  # within the quota, crossing it, past it
        *(row for row in rows if row.group[1] > hour),
    ]
