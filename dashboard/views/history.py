"""Usage over time: tokens per day per key against its quota, by model, by label."""

from __future__ import annotations

import altair as alt
import streamlit as st

from monitor.dashboard import common
from monitor.queries import (
    bucket_for,
    daily_key_tokens,
    hourly_rows,
    label_breakdown,
    token_parts_by_model,
    tokens_by_model,
    usage_by_client,
)


def render(ctx: common.Context) -> None:
    st.title("Usage over time")
    st.caption(common.filters_caption(ctx))
    with ctx.engine.connect() as conn:
        days = daily_key_tokens(conn, ctx.filters, ctx.tz, ctx.settings.default_quota)
        rows = hourly_rows(conn, ctx.filters, ctx.tz, error_classes=False)
        chosen = st.session_state.get("usage_label")
        labels = label_breakdown(conn, ctx.filters, ctx.tz, chosen)
        clients = usage_by_client(conn, ctx.filters, ctx.tz)
        parts = token_parts_by_model(conn, ctx.filters, ctx.tz)
    if not days:
        st.info("No usage in this range.")
        return

    total = sum(d.total_tokens for d in days)
    cols = st.columns(3)
    cols[0].metric("Tokens in range", f"{total:,}")
    cols[1].metric("Calls in range", f"{sum(d.requests for d in days):,}")
    over = sum(1 for d in days if d.total_tokens >= d.quota)
    cols[2].metric("Key-days at or over quota", f"{over}")

    st.subheader("Share of the daily quota used, per key")
    per_day = common.frame(
        [
            {
                "day": str(d.day),
                "key": ctx.key_label(d.key_id),
                "tokens": d.total_tokens,
                "quota": d.quota,
                "used %": round(100 * d.total_tokens / d.quota, 1) if d.quota else 0.0,
            }
            for d in days
        ]
    )
    bars = (
        alt.Chart(per_day)
        .mark_bar()
        .encode(
            x=alt.X("day:O", title=f"Quota day ({ctx.tz_label})", axis=alt.Axis(labelAngle=0)),
            xOffset="key:N",
            y=alt.Y("used %:Q", title="% of the day's quota"),
            color=alt.Color("key:N", title="Key"),
            tooltip=[
                "day:O",
                "key:N",
                alt.Tooltip("tokens:Q", format=","),
                alt.Tooltip("quota:Q", format=","),
                "used %:Q",
            ],
        )
    )
    full = alt.Chart(common.frame([{"y": 100}])).mark_rule(color="black", strokeDash=[4, 3])
    common.chart(alt.layer(bars, full.encode(y="y:Q")).properties(height=300))
    st.caption(
        "The dashed line is the whole quota (each key's own, on each day). Tokens and quota in "
        "the tooltip and the table below; unbilled failures count 0."
    )

    st.subheader("By model")
    bucket = bucket_for(ctx.filters)
    by_model = tokens_by_model(rows, bucket, ctx.tz)
    model_frame = common.frame(
        [
            {"when": m.bucket, "model": m.model or "(not recorded)", "tokens": m.total_tokens}
            for m in by_model
        ],
        ["when", "model", "tokens"],
    )
    model_frame["when"] = common.local_times(list(model_frame["when"]), ctx.tz)
    unit = "Hour" if bucket == "hour" else "Quota day"
    common.chart(
        alt.Chart(model_frame)
        .mark_bar()
        .encode(
            x=common.time_x("when", f"{unit} ({ctx.tz_label})"),
            y=alt.Y("sum(tokens):Q", title="Tokens"),
            color=alt.Color("model:N", title="Model"),
            tooltip=["model:N", alt.Tooltip("sum(tokens):Q", format=",", title="tokens")],
        )
        .properties(height=280)
    )

    st.subheader("Reasoning and cached tokens, per model")
    common.table(
        common.frame(
            [
                {
                    "model": p.model,
                    "output tokens": p.output_tokens,
                    "reasoning tokens": p.reasoning_tokens,
                    "% of output spent reasoning": round(100 * p.reasoning_share, 1),
                    "input tokens": p.input_tokens,
                    "cached input tokens": p.cache_read_tokens,
                    "% of input cached": round(100 * p.cached_share, 1),
                }
                for p in parts
            ]
        ),
        "reasoning and cached tokens per model",
        width="stretch",
    )
    st.caption("Billed calls only. Reasoning tokens are billed as output, cached input apart.")

    st.subheader("By client")
    client_frame = common.frame(
        [
            {
                "client": c.client,
                "tokens": c.total_tokens,
                "% of tokens": round(100 * c.total_tokens / total, 1) if total else 0.0,
                "calls": c.requests,
                "failed calls": c.errors,
            }
            for c in clients
        ],
        ["client", "tokens", "% of tokens", "calls", "failed calls"],
    )
    common.chart(
        alt.Chart(client_frame)
        .mark_bar()
        .encode(
            x=alt.X("tokens:Q", title="Tokens"),
            y=alt.Y("client:N", title="Client", sort="-x"),
            tooltip=["client:N", alt.Tooltip("tokens:Q", format=","), "% of tokens:Q", "calls:Q"],
        )
        .properties(height=max(80, 28 * len(clients)))
    )
    st.caption(
        "The tool that made each call, from its User-Agent (claude-code, openai-python, "
        "openai-agents, curl…)."
    )

    st.subheader("By label")
    if not labels.names:
        st.info(
            "No labelled calls in this range. Label calls with "
            '`with monitor.tags(feature="search", user="alice"): ...`.'
        )
    else:
        st.selectbox("Label", labels.names, key="usage_label")
        label_frame = common.frame(
            [
                {"day": str(r.day), "value": r.value, "tokens": r.total_tokens, "calls": r.requests}
                for r in labels.rows
            ]
        )
        common.chart(
            alt.Chart(label_frame)
            .mark_bar()
            .encode(
                x=alt.X("day:O", title=f"Quota day ({ctx.tz_label})", axis=alt.Axis(labelAngle=0)),
                y=alt.Y("tokens:Q", title="Tokens"),
                color=alt.Color("value:N", title=labels.label),
                tooltip=["value:N", alt.Tooltip("tokens:Q", format=","), "calls:Q"],
            )
            .properties(height=280)
        )
        note = f"Read from {labels.scanned:,} recorded calls"
        if labels.truncated:
            note += " (the newest only: narrow the range or the keys for the rest)"
        st.caption(note + ".")

    with st.expander("Table: tokens per key per day"):
        common.table(per_day, "tokens per key per day", width="stretch")


common.run_page(render)
