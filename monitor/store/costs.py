"""The SQL of pricing a quota day: the hourly groups of a pool's keys, the calls around the one
crossing the free quota, and the charges written back on ``hourly_usage`` and ``daily_usage``.

The arithmetic (which tokens are free, what the rest costs) is :mod:`monitor.ledger.charges` and
:mod:`monitor.ledger.prices`; the job deciding what to price is :mod:`monitor.ledger.costing`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Final, NamedTuple, cast

from sqlalchemy import Connection, Table, and_, bindparam, text, update

from monitor.ledger.charges import Charge
from monitor.ledger.prices import TokenSplit
from monitor.ledger.totals import HOUR, HourlyKey
from monitor.store.grouping import BILLED, BILLED_TOKENS, bin_sql, bind_params, instant, split_sql
from monitor.store.models import DailyUsage, HourlyUsage

__all__ = [
    "CROSSING",
    "PAST",
    "WITHIN",
    "GroupTokens",
    "hour_groups",
    "ordered_parts",
    "write_daily_charges",
    "write_hourly_charges",
]

hourly_usage: Final = cast(Table, HourlyUsage.__table__)
daily_usage: Final = cast(Table, DailyUsage.__table__)

#: The parts :func:`ordered_parts` cuts calls into, in time order.
WITHIN, CROSSING, PAST = 0, 1, 2


class GroupTokens(NamedTuple):
    """Billed tokens of some calls of one hourly group, and their split as priced."""

    group: HourlyKey
    tokens: int
    split: TokenSplit


def hour_groups(
    conn: Connection, key_ids: Sequence[str], start: datetime, end: datetime
) -> list[GroupTokens]:
    """The ``hourly_usage`` rows of ``key_ids`` with ``start <= hour < end``, hour by hour."""
    binds, values = bind_params(start, end, key_ids)
    rows = conn.execute(
        text(
            "SELECT key_id, hour, model, stream, total_tokens, uncached_input_tokens, "
            "cached_input_tokens, output_tokens FROM hourly_usage WHERE key_id IN :key_ids "
            "AND hour >= :start AND hour < :end ORDER BY hour, key_id, model, stream"
        ).bindparams(*binds),
        values,
    )
    return [
        GroupTokens(
            (row[0], instant(row[1]), row[2], bool(row[3])),
            int(row[4]),
            TokenSplit(int(row[5]), int(row[6]), int(row[7])),
        )
        for row in rows
    ]


def ordered_parts(
    conn: Connection, key_ids: Sequence[str], start: datetime, end: datetime, within: int
) -> list[tuple[int, GroupTokens]]:
    """The billed calls of ``key_ids`` started in ``[start, end)``, taken in the order they
    were made (``started_at``, then ``id``), cut where their running total of tokens passes
    ``within``: per hourly group, the sums of the calls wholly :data:`WITHIN` it, the one call
    :data:`CROSSING` it (if any), and the calls :data:`PAST` it; in that order.

    One scan with a running sum in SQL: only these few sums reach Python.
    """
    binds, values = bind_params(start, end, key_ids)
    values["within"] = within
    calls = (
        f"SELECT key_id, {bin_sql(conn, 'started_at', HOUR)} AS hour, "
        f"coalesce(model, '') AS model, stream, {BILLED_TOKENS} AS tokens, {split_sql(conn)}, "
        "coalesce(output_tokens, 0) AS output, "
        f"sum({BILLED_TOKENS}) OVER (ORDER BY started_at, id ROWS UNBOUNDED PRECEDING) AS running "
        "FROM api_calls WHERE key_id IN :key_ids AND started_at >= :start AND started_at < :end "
        f"AND {BILLED}"
    )
    part = (
        f"CASE WHEN running <= :within THEN {WITHIN} "
        f"WHEN running - tokens < :within THEN {CROSSING} ELSE {PAST} END"
    )
    rows = conn.execute(
        text(
            f"SELECT part, key_id, hour, model, stream, CAST(sum(tokens) AS BIGINT), "
            "CAST(sum(uncached_input) AS BIGINT), CAST(sum(cached_input) AS BIGINT), "
            f"CAST(sum(output) AS BIGINT) FROM (SELECT *, {part} AS part FROM ({calls}) AS c) "
            "AS parts GROUP BY part, key_id, hour, model, stream "
            "ORDER BY part, key_id, hour, model, stream"
        ).bindparams(*binds, bindparam("within")),
        values,
    )
    return [
        (
            int(row[0]),
            GroupTokens(
                (row[1], instant(row[2]), row[3], bool(row[4])),
                int(row[5]),
                TokenSplit(int(row[6]), int(row[7]), int(row[8])),
            ),
        )
        for row in rows
    ]


def write_hourly_charges(
    conn: Connection,
    key_ids: Sequence[str],
    start: datetime,
    end: datetime,
    charges: Mapping[HourlyKey, Charge],
) -> None:
    """Set the charges of the ``hourly_usage`` rows of ``key_ids`` in ``[start, end)``: those in
    ``charges`` as given, the others to nothing."""
    h = hourly_usage.c
    conn.execute(
        update(hourly_usage)
        .where(h.key_id.in_(list(key_ids)), h.hour >= start, h.hour < end)
        .values(free_tokens=0, cost_nanos=0, unpriced_tokens=0)
    )
    if not charges:
        return
    statement = (
        update(hourly_usage)
        .where(
            and_(
                h.key_id == bindparam("k"),
                h.hour == bindparam("h"),
                h.model == bindparam("m"),
                h.stream == bindparam("s"),
            )
        )
        .values(
            free_tokens=bindparam("free"),
            cost_nanos=bindparam("cost"),
            unpriced_tokens=bindparam("unpriced"),
        )
    )
    conn.execute(
        statement,
        [
            {
                "k": key_id,
                "h": hour,
                "m": model,
                "s": stream,
                "free": charge.free_tokens,
                "cost": charge.cost,
                "unpriced": charge.unpriced_tokens,
            }
            for (key_id, hour, model, stream), charge in sorted(charges.items())
        ],
    )


def write_daily_charges(
    conn: Connection, day: date, charges: Mapping[str, Charge], currency: str
) -> None:
    """Set the charges of each key's ``daily_usage`` row of ``day`` (keys not given: none)."""
    d = daily_usage.c
    conn.execute(
        update(daily_usage)
        .where(d.key_id.in_(list(charges)), d.day == day)
        .values(free_tokens=0, paid_tokens=0, cost_nanos=0, unpriced_tokens=0, currency=currency)
    )
    changed = [(key_id, charge) for key_id, charge in sorted(charges.items()) if charge != Charge()]
    if not changed:
        return
    conn.execute(
        update(daily_usage)
        .where(d.key_id == bindparam("k"), d.day == day)
        .values(
            free_tokens=bindparam("free"),
            paid_tokens=bindparam("paid"),
            cost_nanos=bindparam("cost"),
            unpriced_tokens=bindparam("unpriced"),
        ),
        [
            {
                "k": key_id,
                "free": charge.free_tokens,
                "paid": charge.paid_tokens,
                "cost": charge.cost,
                "unpriced": charge.unpriced_tokens,
            }
            for key_id, charge in changed
        ],
    )
