"""Costs: per key, pool or model per day, the cache's share and saving, the balance burn-down."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import streamlit as st

from monitor.dashboard import common
from monitor.ledger.quota_day import quota_day
from monitor.queries import CostOverview, cost_overview, cost_shares, format_money, label_breakdown

GROUPINGS = {"key": "Key", "pool": "Pool", "model": "Model"}


def render(ctx: common.Context) -> None:
    st.title("Costs")
    st.caption(
        common.filters_caption(ctx)
        + " · An estimate against published prices; the platform's bill is authoritative."
    )
    today = quota_day(datetime.now(UTC), ctx.tz)
    with ctx.engine.connect() as conn:
        costs = cost_overview(conn, ctx.filters, ctx.tz, ctx.settings.currency, today)
    money = costs.currency
    cols = st.columns(4)
    cols[0].metric("Cost in range", format_money(costs.cost, money, places=2))
    cols[1].metric("Cached share of input", f"{100 * costs.cached_share:.1f}%")
    cols[2].metric("Caching saved", format_money(costs.saving, money, places=2))
    balance = costs.balance
    if balance.last_top_up is None:
        cols[3].metric("Estimated balance", "no top-up recorded")
    else:
        cols[3].metric(
            "Estimated balance",
            format_money(balance.balance, money, places=2),
            f"runs out {costs.run_out}" if costs.run_out else "no recent spending",
            delta_color="off",
        )
    if costs.unpriced_tokens:
        models = sorted({r.model or "(none)" for r in costs.rows if r.unpriced_tokens})
        st.warning(
            f"{costs.unpriced_tokens:,} paid tokens are for models with no price "
            f"({', '.join(models)}): their cost is missing from these figures. "
            "Add prices with `longcat-monitor prices set`."
        )
    if not costs.rows:
        st.info("No priced usage in this range.")
    else:
        _per_day(ctx, costs)
        _shares(ctx, money)
    _balance(ctx, costs)
    _packs(costs)


def _per_day(ctx: common.Context, costs: CostOverview) -> None:
    grouping = st.radio(
        "Cost per day by", list(GROUPINGS), format_func=GROUPINGS.get, horizontal=True
    )
    rows = [
        {
            "day": str(r.day),
            "group": {
                "key": ctx.key_label(r.key_id),
                "pool": r.pool or ctx.key_label(r.key_id),
                "model": r.model or "(none)",
            }[grouping],
            "cost": r.cost / 1e9,  # for the chart's scale only; the figures above are exact
        }
        for r in costs.rows
    ]
    data = common.frame(rows).groupby(["day", "group"], as_index=False)["cost"].sum()
    bars = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("day:O", title=f"Quota day ({ctx.tz_label})", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("cost:Q", title=f"Cost ({costs.currency})"),
            color=alt.Color("group:N", title=GROUPINGS[grouping]),
            tooltip=["day:O", "group:N", alt.Tooltip("cost:Q", format=",.4f")],
        )
    )
    common.chart(bars.properties(height=260))


def _shares(ctx: common.Context, money: str) -> None:
    """Cost per day by the client that made the calls, or by a label's value."""
    st.subheader("Cost per day by client or label")
    with ctx.engine.connect() as conn:
        names = label_breakdown(conn, ctx.filters, ctx.tz).names
    by = st.selectbox(
        "Share the cost out by",
        ["client", *names],
        format_func=lambda n: "client" if n == "client" else f"label {n}",
        key="cost_share_by",
    )
    label = None if by == "client" else by
    with ctx.engine.connect() as conn:
        shares = cost_shares(conn, ctx.filters, ctx.tz, money, label=label)
    if not shares:
        st.info("No charged cost in this range.")
        return
    st.caption(
        "A group of calls (a key's hour, model and mode) is charged as a whole; its cost is shared "
        "among its clients or label values in proportion to what their tokens cost at list "
        "prices. Only the hour that crosses the free quota spreads its free tokens over all."
    )
    common.table(
        common.frame(
            [
                {
                    "day": str(s.day),
                    by: s.value or "(none)",
                    "billed tokens": s.tokens,
                    "cost": format_money(s.cost, money, places=4),
                }
                for s in shares
            ]
        ),
        f"cost per day by {by}",
        width="stretch",
    )


def _balance(ctx: common.Context, costs: CostOverview) -> None:
    balance = costs.balance
    if balance.last_top_up is None or balance.last_top_up_day is None:
        return
    st.subheader("Balance burn-down")
    left = balance.balance + sum(balance.spent.values())
    rows = []
    for day in sorted(balance.spent):
        left -= balance.spent[day]
        rows.append({"day": day, "balance": left / 1e9, "series": "estimated"})
    if costs.run_out is not None and rows:
        rows.append({"day": rows[-1]["day"], "balance": rows[-1]["balance"], "series": "forecast"})
        rows.append({"day": costs.run_out, "balance": 0.0, "series": "forecast"})
    if not rows:
        st.caption("Nothing spent from the balance yet.")
        return
    data = common.frame(rows)
    lines = (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("day:T", title=f"Quota day ({ctx.tz_label})"),
            y=alt.Y("balance:Q", title=f"Balance ({costs.currency})"),
            color=alt.Color("series:N", title=None),
            strokeDash=alt.StrokeDash("series:N", legend=None),
        )
    )
    common.chart(lines.properties(height=220))
    st.caption(
        "Top-ups are added on their day (the balance never expires); paid tokens come from "
        "token packs first. The forecast runs at the average of the last 7 days."
    )


def _packs(costs: CostOverview) -> None:
    if not costs.balance.packs:
        return
    st.subheader("Token packs")
    common.table(
        common.frame(
            [
                {
                    "pack": p.pack.id,
                    "for": p.pack.pool or "any key",
                    "tokens": p.pack.tokens,
                    "left": p.tokens_left,
                    "expires": str(p.pack.expires),
                }
                for p in costs.balance.packs
            ]
        ),
        "token packs",
    )


common.run_page(render)
