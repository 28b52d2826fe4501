"""What the team bought (tables ``top_ups`` and ``token_packs``) and what each quota group's
days cost, for the estimated balance of :mod:`monitor.ledger.billing`.

>>> with engine.begin() as conn:  # doctest: +SKIP
...     add_top_up(conn, date(2026, 11, 1), 100 * NANOS, "USD", now=now)
...     balance_state(top_ups(conn, "USD"), packs(conn), day_spends(conn, "USD"))
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, func, insert, select

from monitor.ledger.billing import BalanceState, DaySpend, Pack, TopUp, balance_state
from monitor.ledger.charges import Charge
from monitor.store.models import DailyUsage, Key, TokenPack
from monitor.store.models import TopUp as TopUpRow

__all__ = [
    "add_pack",
    "add_top_up",
    "balance_of",
    "day_charges",
    "day_spends",
    "packs",
    "top_ups",
]


def add_top_up(conn: Connection, day: date, amount: int, currency: str, *, now: datetime) -> None:
    """Record ``amount`` nano-units of ``currency`` added to the balance on quota day ``day``."""
    conn.execute(
        insert(TopUpRow).values(day=day, amount_nanos=amount, currency=currency, created_at=now)
    )


def add_pack(
    conn: Connection, tokens: int, bought: date, expires: date, pool: str | None, *, now: datetime
) -> int:
    """Record a token pack; its id."""
    result = conn.execute(
        insert(TokenPack).values(
            tokens=tokens, bought=bought, expires=expires, pool=pool, created_at=now
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def top_ups(conn: Connection, currency: str) -> list[TopUp]:
    """The top-ups in ``currency``, oldest first."""
    rows = conn.execute(
        select(TopUpRow.day, TopUpRow.amount_nanos)
        .where(TopUpRow.currency == currency)
        .order_by(TopUpRow.day, TopUpRow.id)
    )
    return [TopUp(day, int(amount)) for day, amount in rows]


def packs(conn: Connection) -> list[Pack]:
    """Every token pack, oldest first."""
    rows = conn.execute(select(TokenPack.__table__).order_by(TokenPack.id))
    return [Pack(row.id, int(row.tokens), row.bought, row.expires, row.pool) for row in rows]


def day_spends(conn: Connection, currency: str, since: date | None = None) -> list[DaySpend]:
    """Per quota day and quota group (a key's pool, else its name, else its id), the paid tokens
    and their cost, from the days priced in ``currency``."""
    group = func.coalesce(Key.pool, Key.name, DailyUsage.key_id)
    query = (
        select(
            DailyUsage.day,
            group,
            func.sum(DailyUsage.paid_tokens),
            func.sum(DailyUsage.cost_nanos),
        )
        .select_from(DailyUsage)
        .outerjoin(Key, Key.key_id == DailyUsage.key_id)
        .where(DailyUsage.currency == currency)
        .group_by(DailyUsage.day, group)
        .order_by(DailyUsage.day)
    )
    if since is not None:
        query = query.where(DailyUsage.day >= since)
    return [
        DaySpend(day, pool, int(paid), int(cost)) for day, pool, paid, cost in conn.execute(query)
    ]


def balance_of(conn: Connection, currency: str) -> BalanceState:
    """The estimated balance in ``currency`` and the packs left, as of the last rollup."""
    return balance_state(top_ups(conn, currency), packs(conn), day_spends(conn, currency))


def day_charges(conn: Connection, day: date) -> dict[str, Charge]:
    """Each key's charges on quota day ``day`` (as of the last rollup)."""
    d = DailyUsage
    rows = conn.execute(
        select(d.key_id, d.free_tokens, d.paid_tokens, d.cost_nanos, d.unpriced_tokens).where(
            d.day == day
        )
    )
    return {
        key_id: Charge(int(free), int(paid), int(cost), int(unpriced))
        for key_id, free, paid, cost, unpriced in rows
    }
