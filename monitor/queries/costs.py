"""What the calls cost: per key, pool and model per quota day, the cache's share and saving, and
the estimated balance with its forecast.

Read from the charges the rollup wrote on ``hourly_usage`` (:mod:`monitor.ledger.costing`) and
from the top-ups and packs (:mod:`monitor.store.billing`). An estimate against published prices:
the platform's bill is authoritative.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import date, tzinfo

from sqlalchemy import Connection, func, select

from monitor.ledger.billing import BalanceState, run_out_day
from monitor.ledger.charges import share_out
from monitor.ledger.prices import PriceEntry, TokenSplit, cache_saving, cost_of, price_on
from monitor.ledger.quota_day import quota_day
from monitor.queries.filters import Filters
from monitor.store.billing import balance_of
from monitor.store.models import HourlyUsage, Key
from monitor.store.prices import price_table
from monitor.store.shares import priced_tokens_by


@dataclass(frozen=True, slots=True)
class CostRow:
    """One key's calls to one model on one quota day. Money in nano-units of the currency."""

    day: date
    key_id: str
    pool: str | None
    model: str
    free_tokens: int
    paid_tokens: int
    cost: int
    unpriced_tokens: int
    uncached_input: int
    cached_input: int
    saving: int


@dataclass(frozen=True, slots=True)
class CostOverview:
    """The cost rows of a range, the balance as of the last rollup and when it runs out."""

    currency: str
    rows: list[CostRow]
    balance: BalanceState
    run_out: date | None

    @property
    def cost(self) -> int:
        return sum(r.cost for r in self.rows)

    @property
    def unpriced_tokens(self) -> int:
        return sum(r.unpriced_tokens for r in self.rows)

    @property
    def cached_share(self) -> float:
        """Cached input as a share of all billed input."""
        cached = sum(r.cached_input for r in self.rows)
        total = cached + sum(r.uncached_input for r in self.rows)
        return cached / total if total else 0.0

    @property
    def saving(self) -> int:
        return sum(r.saving for r in self.rows)


def cost_overview(
    conn: Connection, filters: Filters, tz: tzinfo, currency: str, today: date
) -> CostOverview:
    """Cost rows for the filters' range, keys and models, and the balance in ``currency``."""
    start, end = filters.utc_bounds(tz)
    h = HourlyUsage
    query = (
        select(
            h.key_id,
            h.hour,
            h.model,
            Key.pool,
            *(
                func.sum(column)
                for column in (
                    h.free_tokens,
                    h.total_tokens - h.free_tokens,
                    h.cost_nanos,
                    h.unpriced_tokens,
                    h.uncached_input_tokens,
                    h.cached_input_tokens,
                )
            ),
        )
        .outerjoin(Key, Key.key_id == h.key_id)
        .where(h.hour >= start, h.hour < end)
        .group_by(h.key_id, h.hour, h.model, Key.pool)
    )
    if filters.key_ids:
        query = query.where(h.key_id.in_(filters.key_ids))
    if filters.models:
        query = query.where(h.model.in_(filters.models))
    table = price_table(conn)

    @functools.cache
    def entry(model: str, day: date) -> PriceEntry | None:
        return price_on(table, model, currency, day)

    sums: dict[tuple[date, str, str | None, str], list[int]] = {}
    for key_id, hour, model, pool, *figures in conn.execute(query):
        day = quota_day(hour, tz)
        found = entry(model, day)
        saved = 0
        if found is not None:
            saved = cache_saving(TokenSplit(cached_input=int(figures[5])), found.rates)
        total = sums.setdefault((day, key_id, pool, model), [0] * 7)
        for i, value in enumerate([*figures, saved]):
            total[i] += int(value)
    rows = [
        CostRow(day, key_id, pool, model, *total)
        for (day, key_id, pool, model), total in sorted(sums.items())
    ]
    balance = balance_of(conn, currency)
    return CostOverview(currency, rows, balance, run_out_day(balance, today))


@dataclass(frozen=True, slots=True)
class CostShare:
    """What one client, or one value of a label, cost on one quota day (nano-units)."""

    day: date
    value: str
    tokens: int
    cost: int


def cost_shares(
    conn: Connection, filters: Filters, tz: tzinfo, currency: str, *, label: str | None = None
) -> list[CostShare]:
    """Charged cost per quota day per client (``label`` None) or per value of label ``label``.

    The rollup charges groups of calls (a key's hour, model and mode), not single calls: each
    group's charged cost is shared among its clients (or label values) in proportion to what
    their tokens cost at the day's prices, in whole nano-units that add up to the group's cost.
    So the shares add up to the ledger's figure, and in an hour wholly past the free quota each
    share is exactly what its calls cost; only the hour that crosses the quota spreads its free
    tokens over every call of the hour. Calls with no client (or without the label): ``''``.
    """
    start, end = filters.utc_bounds(tz)
    h = HourlyUsage
    query = select(h.key_id, h.hour, h.model, h.stream, h.cost_nanos).where(
        h.hour >= start, h.hour < end, h.cost_nanos > 0, *replace(filters, endpoints=()).clauses(h)
    )
    charged = {
        (k, hour, model, bool(stream)): int(cost)
        for k, hour, model, stream, cost in conn.execute(query)
    }
    if not charged:
        return []
    tokens = priced_tokens_by(conn, start, end, label=label, key_ids=filters.key_ids)
    table = price_table(conn)
    sums: dict[tuple[date, str], list[int]] = {}
    for group, cost in charged.items():
        day = quota_day(group[1], tz)
        found = price_on(table, group[2], currency, day)
        parts = tokens.get(group, {})
        weights = {
            value: cost_of(TokenSplit(*split), found.rates) if found else sum(split)
            for value, split in parts.items()
        }
        for value, share in share_out(cost, weights or {"": 0}).items():
            total = sums.setdefault((day, value), [0, 0])
            total[0] += sum(parts.get(value, (0, 0, 0)))
            total[1] += share
    return [CostShare(day, value, *figures) for (day, value), figures in sorted(sums.items())]
