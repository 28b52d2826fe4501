"""What a quota day's calls cost once the free quota is used first: pure arithmetic, no I/O.

A key (or a pool of keys sharing one quota) gets ``quota`` free tokens a quota day. Taking its
billed calls in the order they were made, every token within the quota costs nothing, the call
that crosses it is split pro rata (its free share of tokens costs nothing, the rest is paid at
the call's prices, rounded half-even to a nano-unit: the only rounding of the ledger), and every
call past it is paid in full.

The calls may come as :class:`Portion` s of any size: a whole hour's group of calls that lies on
one side of the crossing is one portion, and only the calls of the hour holding the crossing need
to be looked at one by one. Each portion belongs to a group (its hourly row), and the result is
per group.

>>> day = [Portion("a", 300, 3_000), Portion("b", 400, 8_000), Portion("a", 100, 500)]
>>> charged = charge_day(day, quota=500)
>>> charged["b"].free_tokens, charged["b"].cost, charged["a"].cost
(200, 4000, 500)
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Generic, TypeVar

Group = TypeVar("Group", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Portion(Generic[Group]):
    """Calls of one group, in time order with the other portions of the day.

    ``tokens``: billed tokens (what counts toward the quota); ``cost``: their price in nano-units
    before the free quota, ``None`` when their model has no price that day (unpriced).
    """

    group: Group
    tokens: int
    cost: int | None


@dataclass(slots=True)
class Charge:
    """A group's share of the day: tokens the free quota covered, tokens paid for, the cost of
    the paid ones (nano-units), and the paid tokens whose model has no price that day: their
    cost is unknown, so they are counted apart (and alerted), never costed at 0. Within the free
    quota a call without a price costs nothing all the same."""

    free_tokens: int = 0
    paid_tokens: int = 0
    cost: int = 0
    unpriced_tokens: int = 0


def paid_share(cost: int, tokens: int, paid: int) -> int:
    """The cost of ``paid`` of a call's ``tokens`` costing ``cost`` in all, pro rata.

    >>> paid_share(1_000, 3, 1)  # 333.33… rounds to 333
    333
    """
    if paid == tokens:
        return cost
    if paid == 0:
        return 0
    exact = Decimal(cost) * paid / tokens
    return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


def charge_day(portions: Iterable[Portion[Group]], quota: int) -> dict[Group, Charge]:
    """Each group's :class:`Charge` for a day whose ``portions`` come in time order."""
    charges: dict[Group, Charge] = {}
    used = 0
    for portion in portions:
        charge = charges.setdefault(portion.group, Charge())
        free = min(max(quota - used, 0), portion.tokens)
        used += portion.tokens
        paid = portion.tokens - free
        charge.free_tokens += free
        charge.paid_tokens += paid
        if portion.cost is None:
            charge.unpriced_tokens += paid
        else:
            charge.cost += paid_share(portion.cost, portion.tokens, paid)
    return charges


def crossing_index(tokens_in_order: Iterable[int], quota: int) -> int | None:
    """The index of the first of ``tokens_in_order`` whose tokens cross ``quota`` (some of them
    within it, some past it), or ``None`` when none does.

    >>> crossing_index([300, 400, 100], 500), crossing_index([300, 200, 100], 500)
    (1, None)
    """
    used = 0
    for index, tokens in enumerate(tokens_in_order):
        if used < quota < used + tokens:
            return index
        used += tokens
    return None


def share_out(cost: int, parts: Mapping[str, int]) -> dict[str, int]:
    """``cost`` shared among ``parts`` in proportion to their tokens, in whole nano-units that
    add up to ``cost`` exactly (largest remainders first, ties by name).

    >>> share_out(100, {"a": 1, "b": 1, "c": 1})
    {'a': 34, 'b': 33, 'c': 33}
    >>> share_out(7, {"x": 0})
    {'x': 7}
    """
    total = sum(parts.values())
    if total <= 0:
        names = sorted(parts)
        return {name: (cost if i == 0 else 0) for i, name in enumerate(names)}
    shares = {name: cost * tokens // total for name, tokens in parts.items()}
    left = cost - sum(shares.values())
    by_remainder = sorted(parts, key=lambda n: (-(cost * parts[n] % total), n))
    for name in by_remainder[:left]:
        shares[name] += 1
    return shares
