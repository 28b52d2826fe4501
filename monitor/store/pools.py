"""Pools: keys sharing one free daily quota (tables ``pools``, ``pool_quotas``, ``keys.pool``).

A pool's quota is a dated history like a key's (:mod:`monitor.store.keys`); with none, the
configured default. A key in no pool is a pool of one with its own quota, so nothing changes for
a deployment that never makes a pool. Membership is not dated: a day recomputed after a key
moves is charged with the pools as they are now.

>>> with engine.begin() as conn:  # doctest: +SKIP
...     add_pool(conn, "search", quota=5_000_000, effective_from=date(2026, 11, 1), now=now)
...     set_key_pool(conn, "k_…", "search")
...     [group.name for group in quota_groups(conn, ["k_…"], date(2026, 11, 25), 500_000)]
['search']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, delete, insert, select, update

from monitor.store.keys import KeyStoreError, quotas_for
from monitor.store.models import Key, Pool, PoolQuota

__all__ = [
    "PoolInfo",
    "QuotaGroup",
    "add_pool",
    "list_pools",
    "pool_members",
    "pool_quota_for",
    "quota_groups",
    "require_pool",
    "set_budget",
    "set_key_pool",
    "set_pool_quota",
]


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """A pool: its name, its keys' ids, its daily budget in nano-units (``None``: none)."""

    name: str
    key_ids: tuple[str, ...]
    budget_nanos: int | None


@dataclass(frozen=True, slots=True)
class QuotaGroup:
    """Keys sharing one free quota on a day: a pool (``pool`` its name) or a key alone."""

    pool: str | None
    key_ids: tuple[str, ...]
    quota: int


def add_pool(
    conn: Connection,
    name: str,
    *,
    quota: int | None = None,
    effective_from: date | None = None,
    now: datetime,
) -> None:
    """Create the pool ``name``; with ``quota``, its first quota from ``effective_from`` on."""
    if not name.strip():
        raise KeyStoreError("a pool needs a non-empty name")
    if conn.execute(select(Pool.name).where(Pool.name == name)).first() is not None:
        raise KeyStoreError(f"a pool named {name!r} already exists")
    conn.execute(insert(Pool).values(name=name, budget_nanos=None, created_at=now))
    if quota is not None:
        if effective_from is None:
            raise KeyStoreError("a quota needs the day it takes effect")
        set_pool_quota(conn, name, quota, effective_from)


def require_pool(conn: Connection, name: str) -> PoolInfo:
    """The pool called ``name``; :class:`KeyStoreError` naming it if there is none."""
    row = conn.execute(select(Pool.name, Pool.budget_nanos).where(Pool.name == name)).first()
    if row is None:
        raise KeyStoreError(f"no pool named {name!r} (see `longcat-monitor pools list`)")
    return PoolInfo(name, tuple(pool_members(conn, name)), row.budget_nanos)


def list_pools(conn: Connection) -> list[PoolInfo]:
    """Every pool, by name."""
    rows = conn.execute(select(Pool.name, Pool.budget_nanos).order_by(Pool.name)).all()
    members: dict[str, list[str]] = {row.name: [] for row in rows}
    for key_id, pool in conn.execute(
        select(Key.key_id, Key.pool).where(Key.pool.is_not(None)).order_by(Key.name)
    ):
        if pool in members:
            members[pool].append(key_id)
    return [PoolInfo(row.name, tuple(members[row.name]), row.budget_nanos) for row in rows]


def pool_members(conn: Connection, name: str) -> list[str]:
    """The ids of the keys in pool ``name``, by key name."""
    return list(
        conn.execute(select(Key.key_id).where(Key.pool == name).order_by(Key.name)).scalars()
    )


def set_pool_quota(conn: Connection, name: str, quota: int, effective_from: date) -> None:
    """Put ``quota`` in force for pool ``name`` from quota day ``effective_from`` on."""
    if quota <= 0:
        raise KeyStoreError(f"a quota must be a positive number of tokens, got {quota}")
    conn.execute(
        delete(PoolQuota).where(PoolQuota.pool == name, PoolQuota.effective_from == effective_from)
    )
    conn.execute(insert(PoolQuota).values(pool=name, effective_from=effective_from, quota=quota))


def pool_quota_for(conn: Connection, name: str, day: date, default: int) -> int:
    """The quota in force for pool ``name`` on quota day ``day``; ``default`` if it has none."""
    quota = conn.execute(
        select(PoolQuota.quota)
        .where(PoolQuota.pool == name, PoolQuota.effective_from <= day)
        .order_by(PoolQuota.effective_from.desc())
        .limit(1)
    ).scalar_one_or_none()
    return default if quota is None else int(quota)


def set_budget(conn: Connection, name: str, budget_nanos: int | None) -> None:
    """Set (``None``: remove) pool ``name``'s daily spending budget."""
    require_pool(conn, name)
    conn.execute(update(Pool).where(Pool.name == name).values(budget_nanos=budget_nanos))


def set_key_pool(conn: Connection, key_id: str, pool: str | None) -> None:
    """Put a registered key in ``pool`` (``None``: in none)."""
    if pool is not None:
        require_pool(conn, pool)
    conn.execute(update(Key).where(Key.key_id == key_id).values(pool=pool))


def quota_groups(
    conn: Connection, key_ids: Sequence[str], day: date, default: int
) -> list[QuotaGroup]:
    """The quota groups holding ``key_ids`` on ``day``: each pool with every one of its keys,
    and each key in no pool alone, with the quota in force that day."""
    wanted = sorted(set(key_ids))
    pools: dict[str, str | None] = {
        key_id: pool
        for key_id, pool in conn.execute(select(Key.key_id, Key.pool).where(Key.key_id.in_(wanted)))
    }
    alone = [key_id for key_id in wanted if pools.get(key_id) is None]
    groups = [
        QuotaGroup(None, (key_id,), quota)
        for key_id, quota in quotas_for(conn, alone, day, default).items()
    ]
    for name in sorted({pool for pool in pools.values() if pool is not None}):
        quota = pool_quota_for(conn, name, day, default)
        groups.append(QuotaGroup(name, tuple(pool_members(conn, name)), quota))
    return groups
