"""Alerts: each alert and its outcome per channel; the channels (masked), routes and silences in
force; the rules; a test message per channel; silencing a rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st

from monitor.alerts.delivery import DeliveryError
from monitor.alerts.notify import ChannelSender, sample_message
from monitor.alerts.rules import (
    ALL_RULES,
    AUTH_BURST_MIN_401,
    ERROR_RATE_MIN_CALLS,
    ERROR_RATE_SHARE,
    ERROR_WINDOW,
    QUOTA_REFUSED_MIN_CALLS,
    RULES,
)
from monitor.dashboard import common
from monitor.queries import (
    ALERT_STATUSES,
    RETRYING,
    SKIPPED,
    AlertSetup,
    alert_setup,
    alerts_overview,
    silence,
    unsilence,
)

STATUS_ORDER = ALERT_STATUSES
SHOWN_BODIES = 10
SILENCE_SPANS = {"1 hour": 1, "4 hours": 4, "12 hours": 12, "1 day": 24, "7 days": 168}


def render(ctx: common.Context) -> None:
    st.title("Alerts")
    now = datetime.now(UTC)
    with ctx.engine.connect() as conn:
        overview = alerts_overview(conn, ctx.filters.key_ids)
        setup = alert_setup(conn, ctx.settings, now, ctx.key_labels)
    counts = overview.status_counts
    cols = st.columns(len(STATUS_ORDER))
    for col, status in zip(cols, STATUS_ORDER, strict=True):
        col.metric(status.replace("_", " "), f"{counts.get(status, 0):,}")
    for problem in setup.problems:
        st.error(common.as_text(problem))

    left, right = st.columns(2)
    with left:
        _rules(ctx)
        _routes(setup)
    with right:
        _channels(ctx, setup)
    _silences(ctx, setup, now)

    st.subheader("Alert ledger")
    if not overview.rows:
        st.info("No alert has been decided yet.")
        return
    tz = ctx.tz_label
    table = common.frame(
        [
            {
                f"decided ({tz})": common.fmt_time(r.created_at, ctx.tz, seconds=True),
                "key": overview.key_labels.get(r.key_id, r.key_id[:12]),
                "quota day": str(r.day),
                "rule": r.rule,
                "threshold": f"{r.threshold}%" if r.rule == "quota" else "",
                "severity": r.severity or "",
                "status": r.status,
                "channels": " · ".join(
                    f"{d.channel}: {d.status}" + (f" ({d.attempts})" if d.attempts > 1 else "")
                    for d in r.deliveries
                ),
                "detail": r.detail or "",
                "subject": r.subject,
            }
            for r in overview.rows
        ]
    )
    common.table(table, "alerts sent", width="stretch")
    deliveries = [
        {
            "alert": r.subject,
            "channel": d.channel,
            "target": d.target,
            "status": d.status,
            "attempts": d.attempts,
            f"sent ({tz})": common.fmt_time(d.sent_at, ctx.tz, seconds=True),
            f"next try ({tz})": common.fmt_time(d.next_attempt_at, ctx.tz, seconds=True)
            if d.status == RETRYING
            else "",
            "last error": d.last_error or "",
        }
        for r in overview.rows
        for d in r.deliveries
    ]
    if deliveries:
        st.subheader("Per channel")
        common.table(common.frame(deliveries), "alert deliveries", width="stretch")
    st.subheader("Latest messages")
    for row in overview.rows[:SHOWN_BODIES]:
        if row.status == SKIPPED:
            continue
        with st.expander(common.as_text(f"{row.subject} — {row.status}")):
            st.text(row.body_text)


def _rules(ctx: common.Context) -> None:
    s = ctx.settings
    st.subheader("Rules in force")
    thresholds = ", ".join(f"{t}%" for t in s.alert_thresholds)
    minutes = int(ERROR_WINDOW.total_seconds() // 60)
    latency = ", ".join(
        f"{name} over {value:,.0f} ms"
        for name, value in (("p95 latency", s.latency_p95_ms), ("p95 TTFT", s.ttft_p95_ms))
        if value is not None
    )
    st.markdown(
        f"- **Quota**: at {thresholds} of a key's daily quota, one alert per key, day and "
        "threshold (`MONITOR_ALERT_THRESHOLDS`).\n"
        "- **Burn rate**: when at the last hour's pace the quota runs out before the reset "
        f"(midnight {ctx.tz_label}).\n"
        f"- **Error rate**: 429 or 5xx above {ERROR_RATE_SHARE:.0%} of at least "
        f"{ERROR_RATE_MIN_CALLS} calls in {minutes} minutes.\n"
        f"- **Revoked or mistyped key**: {AUTH_BURST_MIN_401} or more 401s in {minutes} minutes.\n"
        f"- **Quota or balance exhausted**: {QUOTA_REFUSED_MIN_CALLS} or more calls refused with "
        f"402 (or 403 `insufficient_quota`) in {minutes} minutes.\n"
        f"- **Latency** per model over {minutes} minutes: {latency or 'off'} "
        "(`MONITOR_LATENCY_P95_MS`, `MONITOR_TTFT_P95_MS`).\n"
        "- **Daily digest** of yesterday.\n\n"
        "Incidents (error rate, 401s, refusals, latency) send one message when they start, a "
        f"reminder at most every {s.alert_repeat_min} minutes (`MONITOR_ALERT_REPEAT_MIN`) and "
        "one when they recover."
    )
    st.caption(f"Default quota of unregistered keys: {s.default_quota:,} tokens a day.")


def _routes(setup: AlertSetup) -> None:
    st.subheader("Routes")
    if not setup.routes:
        st.markdown("No route set: every alert goes to every channel (`MONITOR_ROUTES`).")
        return
    common.table(
        common.frame(
            [{"rule or severity": k, "channels": ", ".join(v)} for k, v in setup.routes.items()]
        ),
        "alert routes",
    )


def _channels(ctx: common.Context, setup: AlertSetup) -> None:
    s = ctx.settings
    st.subheader("Channels")
    common.table(
        common.frame(
            [{"channel": c.name, "target": c.target, "for": c.scope} for c in setup.channels]
        ),
        "alert channels",
    )
    default_to = ", ".join(s.alert_to)
    smtp = f"`{s.smtp_host}:{s.smtp_port}`" if s.smtp_host else "none (MONITOR_SMTP_HOST)"
    st.caption(f"E-mail: SMTP server {smtp}; default recipients {default_to or 'none'}.")
    names = [c.name for c in setup.channels if c.scope == "every key"]
    with st.form("test_channel"):
        name = st.selectbox("Send a test message to", names)
        sent = st.form_submit_button("Send test")
    if sent and name is not None:
        channel = setup.book.for_key("")[name]
        try:
            with st.spinner("Sending…"):
                ChannelSender(lambda: s)(channel, sample_message(s, datetime.now(UTC)))
        except DeliveryError as exc:
            st.error(f"Not sent: {common.as_text(exc)}")
        else:
            st.success(f"Accepted by {common.as_text(f'{channel.name} ({channel.target})')}.")


def _silences(ctx: common.Context, setup: AlertSetup, now: datetime) -> None:
    st.subheader("Silences")
    if setup.silences:
        common.table(
            common.frame(
                [
                    {
                        "id": s.id,
                        "rule": s.rule,
                        "key": ctx.key_labels.get(s.key_id, s.key_id[:12])
                        if s.key_id
                        else "every key",
                        f"until ({ctx.tz_label})": common.fmt_time(s.ends_at, ctx.tz),
                    }
                    for s in setup.silences
                ]
            ),
            "alert silences",
        )
    else:
        st.caption("No silence in force. Silenced alerts are recorded as `silenced`, not sent.")
    keys = {"every key": None, **{label: key_id for key_id, label in ctx.key_labels.items()}}
    with st.form("silence"):
        cols = st.columns(3)
        rule = cols[0].selectbox("Rule", [*RULES, ALL_RULES])
        key = cols[1].selectbox("Key", list(keys))
        span = cols[2].selectbox("For", list(SILENCE_SPANS), index=1)
        add = st.form_submit_button("Silence")
    if add and rule is not None and key is not None and span is not None:
        with ctx.engine.begin() as conn:
            made = silence(conn, rule, keys[key], now, timedelta(hours=SILENCE_SPANS[span]))
        st.success(f"Silence #{made.id}: {rule} for {common.as_text(key)}, {span}.")
    if setup.silences:
        with st.form("unsilence"):
            chosen = st.selectbox("End silence", [s.id for s in setup.silences])
            end = st.form_submit_button("End it now")
        if end and chosen is not None:
            with ctx.engine.begin() as conn:
                unsilence(conn, int(chosen), now)
            st.success(f"Silence #{chosen} ended.")


common.run_page(render)
