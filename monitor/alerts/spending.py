"""Pure alert rules about money: the balance, token packs, a pool's budget, unpriced calls.

Like :mod:`monitor.alerts.rules`, each rule returns :class:`~monitor.alerts.rules.Decision`
values for the alert ledger, whose unique ``(key_id, day, rule, threshold)`` row makes each alert
go out once. The ledger's ``key_id`` names what the alert is about (:func:`subject_id`):

- ``balance``: ``account``, the day of the last top-up, the percentage of it left (50, 20, 10,
  0 by default): each threshold once per top-up.
- ``pack_expiry``: ``pack:<id>``, the pack's expiry day, the days of warning: once per pack.
- ``budget``: ``pool:<name>``, the quota day, 100: once a day when the day's cost passes it.
- ``unpriced``: the key's id, the quota day, 0: once a day while a key's calls have no price.

Quota thresholds and forecasts of a pool are :func:`monitor.alerts.rules.quota_alerts` and
:func:`~monitor.alerts.rules.forecast_alert` with the pool's id and figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Final

from monitor.alerts.rules import Decision, PriorAlert

RULE_BALANCE: Final = "balance"
RULE_PACK_EXPIRY: Final = "pack_expiry"
RULE_BUDGET: Final = "budget"
RULE_UNPRICED: Final = "unpriced"
SPENDING_RULES: Final = (RULE_BALANCE, RULE_PACK_EXPIRY, RULE_BUDGET, RULE_UNPRICED)
#: The ledger ``key_id`` of alerts about the whole account (its balance).
ACCOUNT: Final = "account"


def subject_id(kind: str, name: str | int) -> str:
    """The ledger ``key_id`` of a pool or a pack alert.

    >>> subject_id("pool", "search"), subject_id("pack", 3)
    ('pool:search', 'pack:3')
    """
    return f"{kind}:{name}"


def _held(prior: Iterable[PriorAlert], rule: str, day: date) -> set[int]:
    return {p.threshold for p in prior if p.rule == rule and p.day == day}


def balance_alerts(
    crossed: Sequence[int], top_up_day: date, prior: Iterable[PriorAlert]
) -> list[Decision]:
    """The balance alerts due when it is at or below the percentages ``crossed`` of the top-up
    of ``top_up_day``: the lowest new one is sent, the others are recorded as superseded.

    >>> [(d.threshold, d.send) for d in balance_alerts([50, 20], date(2026, 11, 1), [])]
    [(20, True), (50, False)]
    """
    held = _held(prior, RULE_BALANCE, top_up_day)
    new = sorted(t for t in set(crossed) if t not in held)
    if not new:
        return []
    lowest = new[0]
    return [Decision(RULE_BALANCE, lowest, top_up_day)] + [
        Decision(RULE_BALANCE, t, top_up_day, send=False, reason=f"superseded by {lowest}%")
        for t in new[1:]
    ]


def pack_expiry_alert(
    expires: date, warning_days: int, prior: Iterable[PriorAlert]
) -> Decision | None:
    """The alert for a pack with tokens left expiring on ``expires`` (already found near)."""
    if _held(prior, RULE_PACK_EXPIRY, expires):
        return None
    return Decision(RULE_PACK_EXPIRY, warning_days, expires)


def budget_alert(
    cost_today: int, budget: int | None, day: date, prior: Iterable[PriorAlert]
) -> Decision | None:
    """The alert when a pool's cost today passes its daily ``budget`` (nano-units)."""
    if budget is None or cost_today <= budget or _held(prior, RULE_BUDGET, day):
        return None
    return Decision(RULE_BUDGET, 100, day)


def unpriced_alert(unpriced_tokens: int, day: date, prior: Iterable[PriorAlert]) -> Decision | None:
    """The alert when a key's billed calls today include a model with no price."""
    if unpriced_tokens <= 0 or _held(prior, RULE_UNPRICED, day):
        return None
    return Decision(RULE_UNPRICED, 0, day)
