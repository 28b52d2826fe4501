"""The alerts about pools and money, decided by a tick and kept once in the alert ledger."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine

from monitor.alerts.delivery import Email
from monitor.alerts.rules import PriorAlert
from monitor.alerts.spending import balance_alerts, budget_alert, pack_expiry_alert
from monitor.config import load_settings
from monitor.ledger.jobs import JobPolicy, run_tick
from monitor.records import CallRecord
from monitor.store.alerts import AlertRow, ledger_rows
from monitor.store.billing import add_pack, add_top_up
from monitor.store.calls import insert_calls
from monitor.store.keys import add_key
from monitor.store.pools import add_pool, set_budget, set_key_pool

DAY = date(2026, 3, 10)
T0 = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)  # 10:00 Beijing
DOLLAR = 10**9


def call(at: datetime, key: str, model: str, output: int) -> CallRecord:
    return CallRecord(
        started_at=at,
        api="openai",
        endpoint="/openai/v1/chat/completions",
        key_id=key,
        key_hint=key[-4:],
        model=model,
        status_code=200,
        input_tokens=0,
        output_tokens=output,
        total_tokens=output,
        usage_source="reported",
    )


def test_money_alerts_go_out_once(engine: Engine) -> None:
    settings = load_settings(
        database_url=engine.url.render_as_string(hide_password=False),
        alert_to=("team@example.com",),
    )
    with engine.begin() as conn:
        add_pool(conn, "team", quota=500_000, effective_from=DAY, now=T0)
        set_budget(conn, "team", DOLLAR // 2)
        for key in ("k_one", "k_two"):
            add_key(conn, key_id=key, name=key, hint=key[-4:], recipients=[f"{key}@x.io"], now=T0)
            set_key_pool(conn, key, "team")
        add_top_up(conn, DAY - timedelta(days=1), 2 * DOLLAR, "USD", now=T0)
        add_pack(conn, 1_000, DAY, DAY + timedelta(days=2), "elsewhere", now=T0)
        insert_calls(
            conn,
            [
                call(T0, "k_one", "LongCat-2.0", 500_000),  # the pool's free quota
                # 1,000,000 × 1,200 = $1.20: over the $0.50 budget, the balance down to 40%
                call(T0 + timedelta(minutes=1), "k_two", "LongCat-2.0", 1_000_000),
                call(T0 + timedelta(minutes=2), "k_two", "Unknown-Model", 10),  # unpriced
            ],
        )
    sent: list[Email] = []
    policy = JobPolicy(digest=False)
    now = T0 + timedelta(minutes=30)
    run_tick(engine, settings, now, smtp=sent.append, policy=policy)
    with engine.connect() as conn:
        rows = {(r.key_id, r.rule, r.threshold): r for r in ledger_rows(conn)}
    assert outcome(rows[("account", "balance", 50)]) == "sent"
    assert "$0.80" in rows[("account", "balance", 50)].body_text
    assert rows[("pool:team", "budget", 100)].recipients == ("k_one@x.io", "k_two@x.io")
    assert outcome(rows[("pool:team", "quota", 100)]) == "sent"
    assert ("pool:team", "quota", 90) in rows  # superseded, recorded
    assert rows[("pack:1", "pack_expiry", 3)].day == DAY + timedelta(days=2)
    assert rows[("k_two", "unpriced", 0)].recipients == ("k_two@x.io",)
    before = len(sent)
    run_tick(engine, settings, now + timedelta(minutes=5), smtp=sent.append, policy=policy)
    assert len(sent) == before


def test_balance_alerts_send_the_lowest_new_threshold() -> None:
    day = date(2026, 3, 1)
    held = [PriorAlert("balance", 50, day)]
    decided = balance_alerts([50, 20, 10], day, held)
    assert [(d.threshold, d.send) for d in decided] == [(10, True), (20, False)]
    assert budget_alert(DOLLAR, DOLLAR, day, []) is None  # at the budget is not over it
    assert budget_alert(DOLLAR + 1, DOLLAR, day, []) is not None
    assert pack_expiry_alert(day, 3, [PriorAlert("pack_expiry", 3, day)]) is None


def outcome(row: AlertRow) -> str:
    """The status of a routed alert's e-mail, else the alert's own status."""
    mail = row.delivery("email")
    return mail.status if row.status == "routed" and mail is not None else row.status
