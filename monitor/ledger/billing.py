"""The estimated balance: top-ups, token packs and what the days past the free quota cost.
Pure arithmetic, no I/O.

Paid tokens (those past a quota group's free quota) are taken first from the token packs that
group may use (its own, then the account's), the pack expiring soonest first, on the days from
its purchase to its expiry; what packs cover costs the balance nothing (the day's cost pro rata).
The rest of each day's cost comes off the prepaid balance, counted from the day of the first
top-up on. A balance never expires. The forecast runs the balance down at the average daily
spend of the last :data:`FORECAST_DAYS` days.

>>> state = balance_state([TopUp(date(2026, 11, 1), 10_000_000_000)],
...                       [], [DaySpend(date(2026, 11, 2), "a", 100, 782_400_000)])
>>> state.balance, state.last_top_up
(9217600000, 10000000000)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Final

from monitor.ledger.charges import paid_share

#: Days of spending the balance forecast averages.
FORECAST_DAYS: Final = 7
#: A pack with tokens left this many days (or fewer) before it expires is worth an alert.
PACK_EXPIRY_WARNING_DAYS: Final = 3


@dataclass(frozen=True, slots=True)
class TopUp:
    """Money added to the balance on ``day`` (nano-units)."""

    day: date
    amount: int


@dataclass(frozen=True, slots=True)
class Pack:
    """``tokens`` bought on ``bought``, usable through ``expires``; for quota group ``pool``
    (a pool's name, or a key's name for a key alone), or for any when ``None``."""

    id: int
    tokens: int
    bought: date
    expires: date
    pool: str | None = None


@dataclass(frozen=True, slots=True)
class DaySpend:
    """One quota group's day: tokens past its free quota and what they cost (nano-units)."""

    day: date
    pool: str
    paid_tokens: int
    cost: int


@dataclass(frozen=True, slots=True)
class PackLeft:
    pack: Pack
    tokens_left: int


@dataclass(frozen=True, slots=True)
class BalanceState:
    """Where the money stands: ``balance`` (nano-units, negative when overdrawn), the
    ``last_top_up`` amount (``None``: never topped up), the packs with what is left of them, and
    what came off the balance each day."""

    balance: int
    last_top_up: int | None
    last_top_up_day: date | None
    packs: tuple[PackLeft, ...]
    spent: dict[date, int] = field(default_factory=dict)

    @property
    def percent_left(self) -> float | None:
        """The balance as a percentage of the last top-up (``None``: no top-up)."""
        if not self.last_top_up:
            return None
        return 100.0 * self.balance / self.last_top_up


def balance_state(
    top_ups: Iterable[TopUp], packs: Iterable[Pack], days: Iterable[DaySpend]
) -> BalanceState:
    """The balance and packs after ``top_ups``, ``packs`` and the spending of ``days``."""
    top_ups = sorted(top_ups, key=lambda t: t.day)
    left = {pack.id: pack.tokens for pack in packs}
    by_id = {pack.id: pack for pack in packs}
    first = top_ups[0].day if top_ups else None
    spent: dict[date, int] = {}
    for spend in sorted(days, key=lambda d: (d.day, d.pool)):
        usable = sorted(
            (
                p
                for p in by_id.values()
                if p.bought <= spend.day <= p.expires
                and p.pool in (spend.pool, None)
                and left[p.id] > 0
            ),
            key=lambda p: (p.pool is None, p.expires, p.id),
        )
        need = spend.paid_tokens
        for pack in usable:
            taken = min(need, left[pack.id])
            left[pack.id] -= taken
            need -= taken
        from_balance = paid_share(spend.cost, spend.paid_tokens, need) if spend.paid_tokens else 0
        if first is not None and spend.day >= first:
            spent[spend.day] = spent.get(spend.day, 0) + from_balance
    balance = sum(t.amount for t in top_ups) - sum(spent.values())
    return BalanceState(
        balance=balance,
        last_top_up=top_ups[-1].amount if top_ups else None,
        last_top_up_day=top_ups[-1].day if top_ups else None,
        packs=tuple(PackLeft(by_id[i], left[i]) for i in sorted(by_id)),
        spent=spent,
    )


def run_out_day(state: BalanceState, today: date) -> date | None:
    """The quota day the balance runs out at the average daily spend of the
    :data:`FORECAST_DAYS` days before ``today`` (``None``: nothing spent, or no balance)."""
    if state.last_top_up is None:
        return None
    if state.balance <= 0:
        return today
    recent = sum(state.spent.get(today - timedelta(days=n), 0) for n in range(1, FORECAST_DAYS + 1))
    if recent <= 0:
        return None
    days = math.ceil(state.balance * FORECAST_DAYS / recent)
    return today + timedelta(days=days)


def thresholds_crossed(state: BalanceState, thresholds: Sequence[int]) -> list[int]:
    """The percentages of the last top-up the balance is at or below, highest first."""
    percent = state.percent_left
    if percent is None:
        return []
    return sorted((t for t in thresholds if percent <= t), reverse=True)


def expiring_packs(state: BalanceState, today: date) -> list[PackLeft]:
    """Packs with tokens left that expire within :data:`PACK_EXPIRY_WARNING_DAYS` days."""
    warn = today + timedelta(days=PACK_EXPIRY_WARNING_DAYS)
    return [p for p in state.packs if p.tokens_left > 0 and today <= p.pack.expires <= warn]
