"""Decide the alerts about pools and money for one tick (:mod:`monitor.ledger.jobs` runs it).

Reads where pools, the balance, packs and today's charges stand, applies the pure rules of
:mod:`monitor.alerts.rules` (a pool's quota thresholds and forecast) and
:mod:`monitor.alerts.spending`, and renders each decision into a ledger row. Alerts about a pool
go to its keys' recipients, else ``MONITOR_ALERT_TO``; about the account, to ``MONITOR_ALERT_TO``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from monitor.alerts.forecast import forecast_exhaustion, recent_window_start
from monitor.alerts.messages import (
    AlertFacts,
    RenderedEmail,
    SpendingFacts,
    render,
    render_spending,
)
from monitor.alerts.rules import Decision, KeyState, forecast_alert, quota_alerts
from monitor.alerts.spending import (
    ACCOUNT,
    balance_alerts,
    budget_alert,
    pack_expiry_alert,
    subject_id,
    unpriced_alert,
)
from monitor.ledger.billing import (
    PACK_EXPIRY_WARNING_DAYS,
    expiring_packs,
    run_out_day,
    thresholds_crossed,
)
from monitor.ledger.prices import format_money
from monitor.ledger.quota_day import day_end, day_start, quota_day
from monitor.store import alerts as ledger
from monitor.store.billing import balance_of, day_charges
from monitor.store.key_usage import KeyDayUsage, hourly_tokens_by_key, key_usage_for_day
from monitor.store.pools import list_pools, pool_quota_for

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from monitor.config import Settings

__all__ = ["decide_spending"]


def decide_spending(conn: Connection, settings: Settings, now: datetime) -> list[ledger.NewAlert]:
    """The new ledger rows about pools, the balance, packs and unpriced calls due at ``now``."""
    tz, money = settings.tz, settings.currency
    today = quota_day(now, tz)
    start, reset = day_start(today, tz), day_end(today, tz)
    state = balance_of(conn, money)
    expiring = expiring_packs(state, today)
    days = {today, *(left.pack.expires for left in expiring)}
    if state.last_top_up_day is not None:
        days.add(state.last_top_up_day)
    held = ledger.prior_alerts(conn, days)
    account = tuple(settings.alert_to)
    out: list[ledger.NewAlert] = []

    def add(subject: str, decision: Decision, mail: RenderedEmail, to: Sequence[str]) -> None:
        status = ledger.SKIPPED if not decision.send else ledger.PENDING
        if decision.send and not to:
            status = ledger.NO_RECIPIENTS
        out.append(
            ledger.NewAlert(
                key_id=subject,
                day=decision.day,
                rule=decision.rule,
                threshold=decision.threshold,
                status=status,
                recipients=tuple(to),
                subject=mail.subject,
                body_text=mail.text,
                body_html=mail.html,
                detail=decision.reason or None,
                forecast_at=decision.forecast_at,
            )
        )

    def facts(decision: Decision, subject: str, **more: object) -> SpendingFacts:
        return SpendingFacts(
            decision.rule,
            decision.threshold,
            decision.day,
            subject,
            dashboard_url=settings.dashboard_url,
            **more,  # type: ignore[arg-type]
        )

    if state.last_top_up_day is not None and state.last_top_up is not None:
        crossed = thresholds_crossed(state, settings.balance_thresholds)
        ends = run_out_day(state, today)
        for decision in balance_alerts(crossed, state.last_top_up_day, held.get(ACCOUNT, [])):
            shown = facts(
                decision,
                "the account",
                balance=format_money(state.balance, money, places=2),
                last_top_up=format_money(state.last_top_up, money, places=2),
                run_out=ends,
            )
            add(ACCOUNT, decision, render_spending(shown), account)
    for left in expiring:
        subject = subject_id("pack", left.pack.id)
        found = pack_expiry_alert(
            left.pack.expires, PACK_EXPIRY_WARNING_DAYS, held.get(subject, [])
        )
        if found is not None:
            shown = facts(found, f"pack {left.pack.id}", tokens_left=left.tokens_left)
            add(subject, found, render_spending(shown), account)

    usages = {
        u.key_id: u for u in key_usage_for_day(conn, today, default_quota=settings.default_quota)
    }
    charges = day_charges(conn, today)
    for key_id, charge in charges.items():
        usage = usages.get(key_id)
        name = (usage.name if usage else None) or f"key …{usage.hint if usage else key_id}"
        found = unpriced_alert(charge.unpriced_tokens, today, held.get(key_id, []))
        if found is not None:
            shown = facts(found, name, unpriced_tokens=charge.unpriced_tokens)
            to = tuple(usage.recipients) if usage and usage.recipients else account
            add(key_id, found, render_spending(shown), to)

    pools = list_pools(conn)
    burn = hourly_tokens_by_key(
        conn, [k for p in pools for k in p.key_ids], recent_window_start(now, start)
    )
    for pool in pools:
        members = [usages[k] for k in pool.key_ids if k in usages]
        subject = subject_id("pool", pool.name)
        prior = held.get(subject, [])
        to = _recipients(members) or account
        cost = sum(charges[k].cost for k in pool.key_ids if k in charges)
        found = budget_alert(cost, pool.budget_nanos, today, prior)
        if found is not None:
            shown = facts(
                found,
                f"pool {pool.name}",
                cost_today=format_money(cost, money, places=2),
                budget=format_money(pool.budget_nanos or 0, money, places=2),
            )
            add(subject, found, render_spending(shown), to)
        used = sum(u.total_tokens for u in members)
        if not used:
            continue
        quota = pool_quota_for(conn, pool.name, today, settings.default_quota)
        pool_state = KeyState(subject, today, quota, used, f"pool {pool.name}")
        hourly: Counter[datetime] = Counter()
        for key_id in pool.key_ids:
            for hour, tokens in burn.get(key_id, []):
                hourly[hour] += tokens
        decisions = quota_alerts(pool_state, settings.alert_thresholds, prior)
        rate = forecast_exhaustion(used, quota, sorted(hourly.items()), now, start)
        ahead = None if rate is None else forecast_alert(pool_state, rate.exhaust_at, reset, prior)
        for decision in [*decisions, *([ahead] if ahead else [])]:
            mail = render(
                _pool_facts(
                    pool_state,
                    decision,
                    settings,
                    now,
                    reset,
                    None if rate is None else rate.tokens_per_hour,
                )
            )
            add(subject, decision, mail, to)
    return out


def _recipients(members: Sequence[KeyDayUsage]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for usage in members:
        seen.update(dict.fromkeys(usage.recipients))
    return tuple(seen)


def _pool_facts(
    state: KeyState,
    decision: Decision,
    settings: Settings,
    now: datetime,
    reset: datetime,
    tokens_per_hour: float | None,
) -> AlertFacts:
    return AlertFacts(
        rule=decision.rule,
        threshold=decision.threshold,
        day=decision.day,
        key_hint="",
        key_name=state.name,
        used=state.used,
        quota=state.quota,
        now=now,
        reset_at=reset,
        tz=settings.tz,
        forecast_at=decision.forecast_at,
        tokens_per_hour=tokens_per_hour,
        dashboard_url=settings.dashboard_url,
    )
