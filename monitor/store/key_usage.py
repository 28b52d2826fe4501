"""Queries and upserts of the usage rollups (``daily_usage``, ``hourly_usage``, ``rollup_state``).

The rollup job (:func:`monitor.rollup.run_rollup`) writes through the upserts here; the alert rules
and the dashboard read through :func:`key_usage_for_day`, :func:`hourly_tokens` and
:func:`quota_for`. Upserts are ``INSERT … ON CONFLICT DO UPDATE`` on SQLite and Postgres alike, so
a job run twice, or by two hosts at once, leaves the same rows.

>>> with engine.connect() as conn:  # doctest: +SKIP
...     for usage in key_usage_for_day(conn, date(2026, 11, 25), default_quota=500_000):
...         print(usage.name or "(unnamed)", usage.total_tokens, usage.quota)
search 412000 500000
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, cast

from sqlalchemy import Connection, Insert, String, Table, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from monitor.quota_day import hour_start
from monitor.rollup import CallFacts, HourlyKey, Totals
from monitor.store.keys import quota_for, quota_in_force
from monitor.store.models import ApiCall, DailyUsage, HourlyUsage, Key, RollupState

daily_usage: Final = cast(Table, DailyUsage.__table__)
hourly_usage: Final = cast(Table, HourlyUsage.__table__)
rollup_state: Final = cast(Table, RollupState.__table__)

__all__ = [
    "KeyDayUsage",
    "advance_watermark",
    "calls_between",
    "calls_since",
    "daily_rows",
    "dialect_insert",
    "get_watermark",
    "get_watermarks",
    "hints_for",
    "hourly_tokens",
    "hourly_tokens_by_key",
    "key_usage_for_day",
    "quota_for",
    "refresh_daily_quotas",
    "set_watermark",
    "traffic_key_ids",
    "upsert_daily",
    "upsert_hourly",
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


_CALL_COLUMNS = (
    ApiCall.started_at,
    ApiCall.key_id,
    ApiCall.model,
    ApiCall.stream,
    ApiCall.error_type,
    ApiCall.latency_ms,
    ApiCall.ttft_ms,
    ApiCall.input_tokens,
    ApiCall.output_tokens,
    ApiCall.cache_read_tokens,
    ApiCall.reasoning_tokens,
    ApiCall.total_tokens,
)


def _facts(rows: Iterable[Any]) -> list[CallFacts]:
    return [CallFacts(*row) for row in rows]


def calls_since(conn: Connection, since: datetime | None) -> list[CallFacts]:
    """Calls with a key started at or after ``since`` (every call with a key when ``None``)."""
    query = select(*_CALL_COLUMNS).where(ApiCall.key_id.is_not(None))
    if since is not None:
        query = query.where(ApiCall.started_at >= since)
    return _facts(conn.execute(query))


def calls_between(conn: Connection, key_id: str, start: datetime, end: datetime) -> list[CallFacts]:
    """The calls of ``key_id`` started in ``[start, end)``."""
    query = select(*_CALL_COLUMNS).where(
        ApiCall.key_id == key_id, ApiCall.started_at >= start, ApiCall.started_at < end
    )
    return _facts(conn.execute(query))


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT that supports ``on_conflict_do_update``."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for the {conn.dialect.name} dialect")


def _upsert(conn: Connection, table: Table, rows: list[dict[str, Any]], keys: list[str]) -> None:
    if not rows:
        return
    statement = dialect_insert(conn, table).values(rows)
    updates = {name: statement.excluded[name] for name in rows[0] if name not in keys}
    upsert: Insert = statement.on_conflict_do_update(index_elements=keys, set_=updates)
    conn.execute(upsert)


def _figures(totals: Totals) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "errors_by_class": totals.errors_by_class,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cache_read_tokens": totals.cache_read_tokens,
        "total_tokens": totals.total_tokens,
        "latency_p50_ms": totals.latency_p50_ms,
        "latency_p95_ms": totals.latency_p95_ms,
        "ttft_p50_ms": totals.ttft_p50_ms,
        "ttft_p95_ms": totals.ttft_p95_ms,
    }


def upsert_daily(
    conn: Connection, key_id: str, day: date, totals: Totals, *, quota: int, now: datetime
) -> None:
    """Write (insert or replace) the ``daily_usage`` row of ``key_id`` on quota day ``day``."""
    row = {
        "key_id": key_id,
        "day": day,
        **_figures(totals),
        "reasoning_tokens": totals.reasoning_tokens,
        "quota": quota,
        "updated_at": now,
    }
    _upsert(conn, daily_usage, [row], ["key_id", "day"])


def upsert_hourly(conn: Connection, groups: Mapping[HourlyKey, Totals], *, now: datetime) -> None:
    """Write (insert or replace) ``hourly_usage`` rows, one per ``(key, hour, model, stream)``."""
    rows = [
        {
            "key_id": key_id,
            "hour": hour,
            "model": model,
            "stream": stream,
            **_figures(totals),
            "latency_p99_ms": totals.latency_p99_ms,
            "updated_at": now,
        }
        for (key_id, hour, model, stream), totals in sorted(groups.items())
    ]
    _upsert(conn, hourly_usage, rows, ["key_id", "hour", "model", "stream"])


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


def get_watermark(conn: Connection, name: str) -> datetime | None:
    """How far the rollup called ``name`` has read ``api_calls``; ``None`` before its first run."""
    watermark: datetime | None = conn.execute(
        select(RollupState.watermark).where(RollupState.name == name)
    ).scalar_one_or_none()
    return watermark


def get_watermarks(conn: Connection, *names: str) -> dict[str, datetime | None]:
    """:func:`get_watermark` of each of ``names``, in one query."""
    found = dict(
        conn.execute(
            select(RollupState.name, RollupState.watermark).where(RollupState.name.in_(names))
        ).all()
    )
    return {name: found.get(name) for name in names}


def set_watermark(conn: Connection, name: str, watermark: datetime, *, now: datetime) -> None:
    """Record the watermark of the rollup called ``name``."""
    row = {"name": name, "watermark": watermark, "updated_at": now}
    _upsert(conn, rollup_state, [row], ["name"])


def advance_watermark(conn: Connection, name: str, watermark: datetime, *, now: datetime) -> None:
    """Like :func:`set_watermark`, but never moving a stored watermark back: of two runs at
    once, the one that read the older state may commit last."""
    statement = dialect_insert(conn, rollup_state).values(
        name=name, watermark=watermark, updated_at=now
    )
    stored, offered = rollup_state.c.watermark, statement.excluded.watermark
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "watermark": case((stored > offered, stored), else_=offered),
                "updated_at": statement.excluded.updated_at,
            },
        )
    )


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
