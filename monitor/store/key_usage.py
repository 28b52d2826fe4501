"""Where each key stands: its rolled-up day (:class:`KeyDayUsage`), hourly burn, hints.

The rollup job (:mod:`monitor.ledger.rollup`) writes ``daily_usage`` and ``hourly_usage``; the
alert rules, the metrics and the dashboard read where keys stand through :func:`key_usage_for_day`
and :func:`hourly_tokens` here.

>>> with engine.connect() as conn:  # doctest: +SKIP
...     for usage in key_usage_for_day(conn, date(2026, 11, 25), default_quota=500_000):
...         print(usage.name or "(unnamed)", usage.total_tokens, usage.quota)
search 412000 500000
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, String, func, select, update
from sqlalchemy.dialects import postgresql

from monitor.ledger.quota_day import hour_start
from monitor.store.keys import quota_for, quota_in_force
from monitor.store.models import ApiCall, DailyUsage, HourlyUsage, Key

__all__ = [
    "KeyDayUsage",
    "daily_rows",
    "hints_for",
    "hourly_tokens",
    "hourly_tokens_by_key",
    "key_usage_for_day",
    "quota_for",
    "refresh_daily_quotas",
    "traffic_key_ids",
]


@dataclass(frozen=True, slots=True)
class KeyDayUsage:
    """Where one key stands on one quota day.

    ``name`` is ``None`` for a key seen in traffic but never registered (it then has the default
    quota and no recipients of its own). ``total_tokens`` counts billed calls only; ``errors`` and
    ``errors_by_class`` count every failed call. Figures are as of the last rollup.
    """

    key_id: str
    name: str | None
    hint: str | None
    day: date
    quota: int
    total_tokens: int
    input_tokens: int
    output_tokens: int
    requests: int
    errors: int
    errors_by_class: dict[str, int]
    recipients: tuple[str, ...]

    @property
    def used_fraction(self) -> float:
        """``total_tokens / quota`` (1.0 = the whole quota)."""
        return self.total_tokens / self.quota if self.quota > 0 else 0.0


def refresh_daily_quotas(conn: Connection, default_quota: int) -> int:
    """Set every ``daily_usage.quota`` to the quota in force on its day; rows changed.

    Cheap (one UPDATE over a table of keys × days), so the rollup runs it every time: a quota
    dated in the past, a removed key, or a new ``MONITOR_DEFAULT_QUOTA`` all show up at once.
    """
    in_force = func.coalesce(quota_in_force(DailyUsage.key_id, DailyUsage.day), default_quota)
    result = conn.execute(
        update(DailyUsage).where(DailyUsage.quota != in_force).values(quota=in_force)
    )
    return result.rowcount


def daily_rows(conn: Connection, key_id: str | None = None) -> list[Any]:
    """Every ``daily_usage`` row (of one key if given), by key and day."""
    query = select(DailyUsage.__table__).order_by(DailyUsage.key_id, DailyUsage.day)
    if key_id is not None:
        query = query.where(DailyUsage.key_id == key_id)
    return list(conn.execute(query))


def hints_for(conn: Connection, key_ids: Iterable[str]) -> dict[str, str | None]:
    """A hint for each key id, from registered keys first, else from its calls."""
    wanted = set(key_ids)
    if not wanted:
        return {}
    hints: dict[str, str | None] = dict.fromkeys(wanted)
    registered = conn.execute(select(Key.key_id, Key.hint).where(Key.key_id.in_(wanted)))
    for key_id, registered_hint in registered:
        hints[key_id] = registered_hint
    missing = sorted(key_id for key_id, hint in hints.items() if hint is None)
    if missing:
        # One call's hint per key (a key id always has the same hint): an index probe per key
        # on (key_id, started_at), where a GROUP BY would read every call of every key.
        if conn.dialect.name == "postgresql":
            ids = func.unnest(postgresql.array(missing, type_=String())).table_valued("value")
            asked = ids.render_derived(name="asked")
        else:
            asked = func.json_each(json.dumps(missing)).table_valued("value").alias("asked")
        hint = (
            select(ApiCall.key_hint)
            .where(ApiCall.key_id == asked.c.value, ApiCall.key_hint.is_not(None))
            .limit(1)
            .scalar_subquery()
        )
        for seen_id, seen_hint in conn.execute(select(asked.c.value, hint)):
            if seen_hint is not None:
                hints[seen_id] = seen_hint
    return hints


def traffic_key_ids(conn: Connection) -> set[str]:
    """Every key id that has a rolled-up day."""
    return set(conn.execute(select(DailyUsage.key_id).distinct()).scalars())


def key_usage_for_day(
    conn: Connection, day: date, *, default_quota: int | None = None, include_idle: bool = False
) -> list[KeyDayUsage]:
    """Every registered key, and every unregistered key with calls that day, on quota day ``day``.

    Registered keys are listed by name first, then unnamed ones by key id. A key without a rollup
    row that day shows zero usage and the quota in force (``default_quota`` when it has no dated
    quota; ``None`` means the configured ``MONITOR_DEFAULT_QUOTA``). ``include_idle`` adds the
    unregistered keys seen on other days only.
    """
    if default_quota is None:
        from monitor.config import get_settings

        default_quota = get_settings().default_quota
    registered = {row.key_id: row for row in conn.execute(select(Key.__table__).order_by(Key.name))}
    used = {
        row.key_id: row
        for row in conn.execute(select(DailyUsage.__table__).where(DailyUsage.day == day))
    }
    seen = set(used) | (traffic_key_ids(conn) if include_idle else set())
    unnamed = sorted(seen - set(registered))
    hints = hints_for(conn, unnamed)
    result: list[KeyDayUsage] = []
    for key_id in [*registered, *unnamed]:
        key = registered.get(key_id)
        row = used.get(key_id)
        quota = row.quota if row is not None else quota_for(conn, key_id, day, default_quota)
        result.append(
            KeyDayUsage(
                key_id=key_id,
                name=key.name if key is not None else None,
                hint=key.hint if key is not None else hints.get(key_id),
                day=day,
                quota=int(quota),
                total_tokens=int(row.total_tokens) if row is not None else 0,
                input_tokens=int(row.input_tokens) if row is not None else 0,
                output_tokens=int(row.output_tokens) if row is not None else 0,
                requests=int(row.requests) if row is not None else 0,
                errors=int(row.errors) if row is not None else 0,
                errors_by_class=dict(row.errors_by_class or {}) if row is not None else {},
                recipients=tuple(key.recipients or ()) if key is not None else (),
            )
        )
    return result


def hourly_tokens_by_key(
    conn: Connection, key_ids: Iterable[str], since_utc: datetime
) -> dict[str, list[tuple[datetime, int]]]:
    """:func:`hourly_tokens` of each of ``key_ids``, in one query."""
    result: dict[str, list[tuple[datetime, int]]] = {key_id: [] for key_id in key_ids}
    if not result:
        return result
    h = HourlyUsage
    rows = conn.execute(
        select(h.key_id, h.hour, func.sum(h.total_tokens))
        .where(h.hour >= hour_start(since_utc), h.key_id.in_(list(result)))
        .group_by(h.key_id, h.hour)
        .order_by(h.key_id, h.hour)
    )
    for key_id, when, total in rows:
        result[key_id].append((when, int(total)))
    return result


def hourly_tokens(conn: Connection, key_id: str, since_utc: datetime) -> list[tuple[datetime, int]]:
    """Billed tokens of ``key_id`` per UTC hour from the hour containing ``since_utc`` on.

    Summed over models and streaming modes; hours without calls are absent. For burn rates.
    """
    hour = HourlyUsage.hour
    first = hour_start(since_utc)
    rows = conn.execute(
        select(hour, func.sum(HourlyUsage.total_tokens))
        .where(HourlyUsage.key_id == key_id, hour >= first)
        .group_by(hour)
        .order_by(hour)
    )
    return [(when, int(total)) for when, total in rows]
