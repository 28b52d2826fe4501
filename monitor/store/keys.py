"""Registered keys and their dated quota history (tables ``keys`` and ``key_quotas``).

A key is known by its fingerprint (:func:`monitor.capture.fingerprint.key_id`) and hint only.
Its quota is a dated history: the quota in force on quota day D is the row with the greatest
``effective_from`` ≤ D, or the configured default when there is none.

>>> with engine.begin() as conn:  # doctest: +SKIP
...     add_key(conn, key_id="k_…", name="search", hint="9f3c", quota=500_000,
...             effective_from=date(2026, 11, 1), now=now)
...     set_quota(conn, "k_…", 5_000_000, date(2026, 11, 25))
...     quota_for(conn, "k_…", date(2026, 11, 24), 500_000)
500000
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    ScalarSelect,
    Select,
    SQLColumnExpression,
    delete,
    insert,
    select,
    update,
)

from monitor.store.models import DailyUsage, Key, KeyQuota


class KeyStoreError(ValueError):
    """A key operation cannot be done as asked; the message says why, for a person to read."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A registered key: fingerprint, unique name, last characters, alert recipients."""

    key_id: str
    name: str
    hint: str
    recipients: tuple[str, ...]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class QuotaChange:
    """One row of a key's quota history: ``quota`` tokens a day from ``effective_from`` on."""

    effective_from: date
    quota: int


def _info(row: Row[Any]) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        name=row.name,
        hint=row.hint,
        recipients=tuple(row.recipients or ()),
        created_at=row.created_at,
    )


def _check_quota(quota: int) -> None:
    if quota <= 0:
        raise KeyStoreError(f"a quota must be a positive number of tokens, got {quota}")


def add_key(
    conn: Connection,
    *,
    key_id: str,
    name: str,
    hint: str,
    recipients: Sequence[str] = (),
    quota: int | None = None,
    effective_from: date | None = None,
    now: datetime,
) -> KeyInfo:
    """Register a key; with ``quota``, also its first quota row from ``effective_from`` on.

    Raises :class:`KeyStoreError` if the name or the key is already registered.
    """
    if not name.strip():
        raise KeyStoreError("a key needs a non-empty name")
    if quota is not None:
        _check_quota(quota)
        if effective_from is None:
            raise KeyStoreError("a quota needs the day it takes effect")
    if get_key_by_name(conn, name) is not None:
        raise KeyStoreError(f"a key named {name!r} already exists")
    existing = get_key(conn, key_id)
    if existing is not None:
        raise KeyStoreError(f"this key is already registered as {existing.name!r}")
    conn.execute(
        insert(Key).values(
            key_id=key_id, name=name, hint=hint, recipients=list(recipients), created_at=now
        )
    )
    if quota is not None and effective_from is not None:
        set_quota(conn, key_id, quota, effective_from)
    found = get_key(conn, key_id)
    assert found is not None
    return found


def get_key(conn: Connection, key_id: str) -> KeyInfo | None:
    """The registered key with this fingerprint, if any."""
    row = conn.execute(select(Key.__table__).where(Key.key_id == key_id)).one_or_none()
    return None if row is None else _info(row)


def get_key_by_name(conn: Connection, name: str) -> KeyInfo | None:
    """The registered key called ``name``, if any."""
    row = conn.execute(select(Key.__table__).where(Key.name == name)).one_or_none()
    return None if row is None else _info(row)


def require_key(conn: Connection, name: str) -> KeyInfo:
    """The registered key called ``name``; :class:`KeyStoreError` naming it if there is none."""
    found = get_key_by_name(conn, name)
    if found is None:
        raise KeyStoreError(f"no key named {name!r} (see `longcat-monitor keys list`)")
    return found


def list_keys(conn: Connection) -> list[KeyInfo]:
    """Every registered key, by name."""
    rows = conn.execute(select(Key.__table__).order_by(Key.name)).all()
    return [_info(row) for row in rows]


def set_recipients(conn: Connection, key_id: str, recipients: Sequence[str]) -> None:
    """Replace the alert recipients of a registered key."""
    conn.execute(update(Key).where(Key.key_id == key_id).values(recipients=list(recipients)))


def set_quota(conn: Connection, key_id: str, quota: int, effective_from: date) -> None:
    """Put ``quota`` in force for ``key_id`` from quota day ``effective_from`` on.

    Days before keep their quota; a later dated row, if any, still takes over on its day. Setting
    the same day twice replaces that day's row. Rolled-up ``daily_usage`` rows of the key get the
    quota now in force on their day.
    """
    _check_quota(quota)
    changed = conn.execute(
        update(KeyQuota)
        .where(KeyQuota.key_id == key_id, KeyQuota.effective_from == effective_from)
        .values(quota=quota)
    ).rowcount
    if not changed:
        conn.execute(
            insert(KeyQuota).values(key_id=key_id, effective_from=effective_from, quota=quota)
        )
    refresh_key_daily_quotas(conn, key_id)


def quota_history(conn: Connection, key_id: str) -> list[QuotaChange]:
    """The dated quota rows of ``key_id``, oldest first."""
    rows = conn.execute(
        select(KeyQuota.effective_from, KeyQuota.quota)
        .where(KeyQuota.key_id == key_id)
        .order_by(KeyQuota.effective_from)
    ).all()
    return [QuotaChange(effective_from=row.effective_from, quota=row.quota) for row in rows]


def quota_histories(conn: Connection, key_ids: Sequence[str]) -> dict[str, list[QuotaChange]]:
    """:func:`quota_history` of each of ``key_ids`` in one query (``[]`` for a key without)."""
    histories: dict[str, list[QuotaChange]] = {key_id: [] for key_id in key_ids}
    if not histories:
        return histories
    rows = conn.execute(
        select(KeyQuota.key_id, KeyQuota.effective_from, KeyQuota.quota)
        .where(KeyQuota.key_id.in_(list(histories)))
        .order_by(KeyQuota.key_id, KeyQuota.effective_from)
    )
    for row in rows:
        histories[row.key_id].append(QuotaChange(row.effective_from, int(row.quota)))
    return histories


def quota_on(history: Sequence[QuotaChange], day: date, default: int) -> int:
    """The quota in force on ``day`` by a key's ``history`` (oldest first), as :func:`quota_for`.

    >>> quota_on([QuotaChange(date(2026, 11, 1), 5_000_000)], date(2026, 10, 31), 500_000)
    500000
    """
    quota = default
    for change in history:
        if change.effective_from > day:
            break
        quota = change.quota
    return quota


def _latest_quota(
    key_id: str | SQLColumnExpression[str], day: date | SQLColumnExpression[date]
) -> Select[int]:
    return (
        select(KeyQuota.quota)
        .where(KeyQuota.key_id == key_id, KeyQuota.effective_from <= day)
        .order_by(KeyQuota.effective_from.desc())
        .limit(1)
    )


def quota_in_force(
    key_id: SQLColumnExpression[str], day: SQLColumnExpression[date]
) -> ScalarSelect[int]:
    """SQL for the dated quota of ``key_id`` on ``day`` (NULL when none), as a scalar subquery."""
    return _latest_quota(key_id, day).scalar_subquery()


def quota_for(conn: Connection, key_id: str, day: date, default: int) -> int:
    """The quota in force for ``key_id`` on quota day ``day``; ``default`` if it has none."""
    quota = conn.execute(_latest_quota(key_id, day)).scalar_one_or_none()
    return default if quota is None else int(quota)


def quotas_for(conn: Connection, key_ids: Sequence[str], day: date, default: int) -> dict[str, int]:
    """:func:`quota_for` of each of ``key_ids`` on ``day``, in one query."""
    quotas = dict.fromkeys(key_ids, default)
    if not quotas:
        return quotas
    rows = conn.execute(
        select(KeyQuota.key_id, KeyQuota.quota)
        .where(KeyQuota.key_id.in_(list(quotas)), KeyQuota.effective_from <= day)
        .order_by(KeyQuota.key_id, KeyQuota.effective_from)
    )
    for key_id, quota in rows:  # the latest one in force wins
        quotas[key_id] = int(quota)
    return quotas


def refresh_key_daily_quotas(conn: Connection, key_id: str) -> int:
    """Give ``key_id``'s rolled-up days the dated quota in force on each; rows changed.

    Days before the key's first dated quota keep the quota they were rolled up with (the default).
    """
    in_force = quota_in_force(DailyUsage.key_id, DailyUsage.day)
    result = conn.execute(
        update(DailyUsage)
        .where(DailyUsage.key_id == key_id, in_force.is_not(None), DailyUsage.quota != in_force)
        .values(quota=in_force)
    )
    return result.rowcount


def remove_key(conn: Connection, name: str) -> KeyInfo:
    """Unregister the key called ``name`` and its quota history; its usage rows stay."""
    found = require_key(conn, name)
    conn.execute(delete(KeyQuota).where(KeyQuota.key_id == found.key_id))
    conn.execute(delete(Key).where(Key.key_id == found.key_id))
    return found
