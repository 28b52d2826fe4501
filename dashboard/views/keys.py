"""Keys: registered keys with hint, today's quota and its history, recipients."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from monitor.dashboard import common
from monitor.ledger.quota_day import quota_day
from monitor.queries import key_details


def render(ctx: common.Context) -> None:
    st.title("Keys")
    today = quota_day(datetime.now(UTC), ctx.tz)
    with ctx.engine.connect() as conn:
        keys = key_details(conn, today, ctx.settings.default_quota)
    if ctx.filters.key_ids:
        keys = [k for k in keys if k.key_id in ctx.filters.key_ids]
    if not keys:
        st.info("No keys registered or seen. Register one with `longcat-monitor keys add NAME`.")
        return
    table = common.frame(
        [
            {
                "name": k.name or "(unnamed)",
                "hint": f"…{k.hint}" if k.hint else "",
                f"quota today ({today})": f"{k.quota_today:,}",
                "used today": f"{k.used_today:,}",
                "% used": f"{100 * k.used_today / k.quota_today:.1f}%" if k.quota_today else "",
                "calls today": k.requests_today,
                "recipients": ", ".join(k.recipients)
                or ("MONITOR_ALERT_TO" if k.name else "MONITOR_ALERT_TO (unregistered)"),
                f"registered ({ctx.tz_label})": common.fmt_time(k.registered_at, ctx.tz),
            }
            for k in keys
        ]
    )
    common.table(table, "keys", width="stretch")
    if any(k.name is None for k in keys):
        st.caption(
            "Unnamed keys were seen in traffic but never registered; they get the default quota "
            f"({ctx.settings.default_quota:,}). Name one with `longcat-monitor keys add NAME`."
        )

    st.subheader("Quota history")
    for k in keys:
        if k.name is None:
            continue
        label = common.as_text(f"{k.name} …{k.hint}")
        with st.expander(label, expanded=len(k.history) > 1):
            if not k.history:
                st.write(f"No dated quota: the default {ctx.settings.default_quota:,} applies.")
                continue
            common.table(
                common.frame(
                    [
                        {"from quota day": str(q.effective_from), "daily quota": f"{q.quota:,}"}
                        for q in k.history
                    ]
                ),
                f"quota history {k.name}",
            )
    st.caption("Change a quota with `longcat-monitor keys set-quota NAME N [--from YYYY-MM-DD]`.")


common.run_page(render)
