"""Alerts: what was sent, failed or is retrying; the rules in force; a test e-mail."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from monitor.alerts.delivery import DeliveryError, Email, SmtpSender
from monitor.alerts.rules import (
    AUTH_BURST_MIN_401,
    ERROR_RATE_MIN_CALLS,
    ERROR_RATE_SHARE,
    ERROR_WINDOW,
    QUOTA_REFUSED_MIN_CALLS,
)
from monitor.dashboard import common
from monitor.queries import ALERT_STATUSES, RETRYING, SKIPPED, alerts_overview

STATUS_ORDER = ALERT_STATUSES
SHOWN_BODIES = 10


def render(ctx: common.Context) -> None:
    st.title("Alerts")
    with ctx.engine.connect() as conn:
        overview = alerts_overview(conn, ctx.filters.key_ids)
    counts = overview.status_counts
    cols = st.columns(len(STATUS_ORDER))
    for col, status in zip(cols, STATUS_ORDER, strict=True):
        col.metric(status.replace("_", " "), f"{counts.get(status, 0):,}")

    left, right = st.columns(2)
    with left:
        _rules(ctx)
    with right:
        _test_email(ctx)

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
                "status": r.status,
                "attempts": r.attempts,
                f"sent ({tz})": common.fmt_time(r.sent_at, ctx.tz, seconds=True),
                f"next try ({tz})": common.fmt_time(r.next_attempt_at, ctx.tz, seconds=True)
                if r.status == RETRYING
                else "",
                "last error": r.last_error or "",
                "recipients": ", ".join(r.recipients),
                "subject": r.subject,
            }
            for r in overview.rows
        ]
    )
    common.table(table, "alerts sent", width="stretch")
    st.subheader("Latest e-mails")
    for row in overview.rows[:SHOWN_BODIES]:
        if row.status == SKIPPED:
            continue
        with st.expander(f"{row.subject} — {row.status}"):
            st.text(row.body_text)


def _rules(ctx: common.Context) -> None:
    s = ctx.settings
    st.subheader("Rules in force")
    thresholds = ", ".join(f"{t}%" for t in s.alert_thresholds)
    minutes = int(ERROR_WINDOW.total_seconds() // 60)
    st.markdown(
        f"- **Quota**: at {thresholds} of a key's daily quota, one e-mail per key, day and "
        "threshold (`MONITOR_ALERT_THRESHOLDS`).\n"
        "- **Forecast**: when the current pace empties the quota before the reset "
        f"(midnight {ctx.tz_label}).\n"
        f"- **Error rate**: 429 or 5xx above {ERROR_RATE_SHARE:.0%} of at least "
        f"{ERROR_RATE_MIN_CALLS} calls in {minutes} minutes.\n"
        f"- **Revoked or mistyped key**: {AUTH_BURST_MIN_401} or more 401s in {minutes} minutes.\n"
        f"- **Quota or balance exhausted**: {QUOTA_REFUSED_MIN_CALLS} or more calls refused with "
        f"402 (or 403 `insufficient_quota`) in {minutes} minutes.\n"
        "- **Daily digest** of yesterday, where the key has recipients."
    )
    st.caption(f"Default quota of unregistered keys: {s.default_quota:,} tokens a day.")


def _test_email(ctx: common.Context) -> None:
    s = ctx.settings
    st.subheader("E-mail delivery")
    if s.smtp_host:
        login = f", login as {s.smtp_user}" if s.smtp_user else ""
        tls = ", STARTTLS" if s.smtp_starttls else ""
        server = f"`{s.smtp_host}:{s.smtp_port}`"
        st.markdown(f"SMTP server {server}{tls}{login}; from `{s.alert_from}`.")
    else:
        st.warning("No SMTP server set: alerts are recorded but not sent (set MONITOR_SMTP_HOST).")
    default_to = ", ".join(s.alert_to)
    st.markdown(f"Default recipients (`MONITOR_ALERT_TO`): {default_to or 'none'}.")
    with st.form("test_email"):
        to = st.text_input("Send a test e-mail to", value=s.alert_to[0] if s.alert_to else "")
        sent = st.form_submit_button("Send test e-mail")
    if sent:
        recipients = tuple(a.strip() for a in to.split(",") if a.strip())
        now = datetime.now(UTC)
        email = Email(
            recipients,
            "LongCat monitor: test e-mail",
            f"This is a test e-mail from the LongCat usage monitor, sent "
            f"{common.fmt_time(now, ctx.tz, seconds=True)} {ctx.tz_label}.",
            "<p>This is a test e-mail from the LongCat usage monitor.</p>",
        )
        try:
            with st.spinner("Sending…"):
                SmtpSender(lambda: s, timeout=10)(email)
        except DeliveryError as exc:
            st.error(f"Not sent: {exc}")
        else:
            st.success(f"Accepted by {s.smtp_host}:{s.smtp_port} for {', '.join(recipients)}.")


common.run_page(render)
