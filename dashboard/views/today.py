"""Today: per key, used / quota, remaining, time to reset, burn-down with forecast, errors."""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import streamlit as st

from monitor.dashboard import common
from monitor.queries import KeyToday, TodayOverview, format_money, today_overview

HOUR = timedelta(hours=1)
STALE_AFTER = timedelta(minutes=5)


def render(ctx: common.Context) -> None:
    with ctx.engine.connect() as conn:
        today = today_overview(
            conn,
            tz=ctx.tz,
            default_quota=ctx.settings.default_quota,
            key_ids=ctx.filters.key_ids,
            currency=ctx.settings.currency,
        )
    st.title(f"Today · quota day {today.day}")
    _summary(ctx, today)
    _freshness(ctx, today)
    if not today.keys:
        st.info("No key has made a call today yet.")
        return
    for key in today.keys:
        _key_panel(ctx, today, key)


def _summary(ctx: common.Context, today: TodayOverview) -> None:
    viewer = common.viewer_zone()
    reset_here = common.fmt_time(today.reset_at, ctx.tz)
    reset_text = f"at {reset_here[-5:]} {ctx.tz_label}"
    if viewer is not None and str(viewer) != str(ctx.tz):
        reset_text += (
            f" = {common.fmt_time(today.reset_at, viewer)[-5:]} your time "
            f"({common.zone_label(viewer)})"
        )
    cols = st.columns(5)
    cols[0].metric("Tokens used today (all keys)", f"{today.total_tokens:,}")
    cols[1].metric("Calls today", f"{today.requests:,}")
    cols[2].metric("Error rate today", f"{100 * today.error_rate:.1f}%")
    cols[3].metric("Cost today (estimate)", format_money(today.cost, today.currency, places=2))
    cols[4].metric("Quota resets in", common.fmt_span(today.until_reset))
    st.caption(f"The quota resets at midnight {ctx.tz_label}: {reset_text}.")


def _freshness(ctx: common.Context, today: TodayOverview) -> None:
    updated = today.freshness.updated_at
    if updated is None:
        st.warning(
            "No rollup has run yet, so today's totals are empty. Start "
            "`longcat-monitor scheduler` (or run `longcat-monitor tick`)."
        )
        return
    age = today.now - updated
    text = (
        f"Totals as of the last rollup, {common.fmt_time(updated, ctx.tz, seconds=True)} "
        f"{ctx.tz_label} ({common.fmt_span(age)} ago)."
    )
    if age > STALE_AFTER:
        st.warning(text + " Is `longcat-monitor scheduler` running?")
    else:
        st.caption(text)


def _key_panel(ctx: common.Context, today: TodayOverview, key: KeyToday) -> None:
    usage = key.usage
    name = usage.name or "unnamed key"
    hint = f"…{usage.hint}" if usage.hint else ""
    with st.container(border=True):
        st.subheader(common.as_text(f"{name} {hint}".strip()))
        fraction = usage.used_fraction
        st.progress(
            min(fraction, 1.0),
            text=f"{100 * fraction:.1f}% of the daily quota used"
            + (" — quota exhausted" if key.exhausted else ""),
        )
        top = st.columns(3)
        top[0].metric("Used today", f"{usage.total_tokens:,}")
        top[1].metric("Quota", f"{usage.quota:,}")
        top[2].metric("Remaining", f"{key.remaining:,}")
        bottom = st.columns(3)
        bottom[0].metric("Calls today", f"{usage.requests:,}")
        bottom[1].metric("Error rate", f"{100 * key.error_rate:.1f}%")
        bottom[2].metric("Runs out at", _exhaustion_text(ctx, today, key))
        money = st.columns(3)
        money[0].metric("Free quota used", f"{key.charge.free_tokens:,}")
        money[1].metric("Paid today", f"{key.charge.paid_tokens:,} tokens")
        money[2].metric("Cost today", format_money(key.charge.cost, today.currency, places=4))
        if key.charge.unpriced_tokens:
            st.warning(
                f"{key.charge.unpriced_tokens:,} paid tokens are for a model with no price: "
                "their cost is not in the figure (`longcat-monitor prices set`)."
            )
        _forecast_caption(ctx, today, key)
        common.chart(_burn_down(ctx, today, key))


def _exhaustion_text(ctx: common.Context, today: TodayOverview, key: KeyToday) -> str:
    if key.exhausted:
        return "exhausted"
    when = key.exhaust_before(today.reset_at)
    if when is not None:
        return when.astimezone(ctx.tz).strftime("%H:%M")
    return "not today"


def _forecast_caption(ctx: common.Context, today: TodayOverview, key: KeyToday) -> None:
    f = key.forecast
    if key.exhausted:
        st.caption("Calls with this key are refused until the reset.")
    elif f is None:
        st.caption("Too early in the quota day for a forecast.")
    else:
        when = key.exhaust_before(today.reset_at)
        pace = (
            f"Burning {f.tokens_per_hour:,.0f} tokens/hour since "
            + common.fmt_time(f.since, ctx.tz)[-5:]
        )
        if when is not None:
            st.caption(
                f"{pace}: the quota runs out at about {when.astimezone(ctx.tz):%H:%M} "
                f"{ctx.tz_label}, {common.fmt_span(when - today.now)} from now."
            )
        else:
            st.caption(f"{pace}: the quota lasts until the reset at this pace.")


def _burn_down(ctx: common.Context, today: TodayOverview, key: KeyToday) -> alt.LayerChart:
    quota = key.usage.quota
    rows = [
        {"time": p.at, "remaining": max(quota - p.used, 0), "series": "remaining"} for p in key.burn
    ]
    last_remaining = max(quota - key.usage.total_tokens, 0)
    rows.append({"time": today.now, "remaining": last_remaining, "series": "remaining"})
    f = key.forecast
    if f is not None and f.tokens_per_hour > 0 and last_remaining > 0:
        end = min(f.exhaust_at or today.reset_at, today.reset_at)
        left = max(last_remaining - f.tokens_per_hour * ((end - today.now) / HOUR), 0)
        rows.append({"time": today.now, "remaining": last_remaining, "series": "forecast"})
        rows.append({"time": end, "remaining": left, "series": "forecast"})
    data = common.frame(rows)
    data["time"] = common.local_times(list(data["time"]), ctx.tz)
    data["at"] = [t.strftime("%H:%M") for t in data["time"]]
    x = common.time_x("time", f"Time ({ctx.tz_label})")
    lines = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("remaining:Q", title="Tokens remaining", scale=alt.Scale(domainMin=0)),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=["remaining", "forecast"], range=["#1f77b4", "#d62728"]),
            ),
            strokeDash=alt.StrokeDash(
                "series:N",
                legend=None,
                scale=alt.Scale(domain=["remaining", "forecast"], range=[[1, 0], [6, 4]]),
            ),
            tooltip=[
                alt.Tooltip("at:N", title=f"time ({ctx.tz_label})"),
                alt.Tooltip("remaining:Q", format=",.0f"),
                "series:N",
            ],
        )
    )
    bounds = common.frame(
        [
            {"time": today.day_start, "what": "day start"},
            {"time": today.reset_at, "what": "reset"},
        ]
    )
    bounds["time"] = common.local_times(list(bounds["time"]), ctx.tz)
    edges = alt.Chart(bounds).mark_rule(opacity=0).encode(x=x)
    now = common.frame([{"time": today.now.astimezone(ctx.tz).replace(tzinfo=None)}])
    now_rule = alt.Chart(now).mark_rule(color="gray", strokeDash=[2, 2]).encode(x=x)
    return alt.layer(edges, lines, now_rule).properties(height=220)


common.run_page(render)
