"""Errors: error rate over time stacked by class, and the most recent failures."""

from __future__ import annotations

import altair as alt
import streamlit as st

from monitor.dashboard import common
from monitor.queries import bucket_for, error_series, error_totals, hourly_rows, recent_failures


def render(ctx: common.Context) -> None:
    st.title("Errors")
    st.caption(common.filters_caption(ctx))
    with ctx.engine.connect() as conn:
        rows = hourly_rows(conn, ctx.filters, ctx.tz)
        failures = recent_failures(conn, ctx.filters, ctx.tz)
    totals = error_totals(rows)
    cols = st.columns(4)
    cols[0].metric("Calls", f"{totals.requests:,}")
    cols[1].metric("Failed calls", f"{totals.errors:,}")
    cols[2].metric("Error rate", f"{100 * totals.rate:.1f}%")
    top = next(iter(totals.by_class), None)
    cols[3].metric("Most frequent class", top or "–")

    refused = totals.by_class.get("quota_exhausted", 0)
    if refused:
        st.warning(
            f"{refused:,} calls were refused because a key's token quota or balance is exhausted "
            "(402, or 403 insufficient_quota): class `quota_exhausted`, not billed."
        )

    st.subheader("Error rate by class")
    bucket = bucket_for(ctx.filters)
    points = error_series(rows, bucket, ctx.tz)
    if not points:
        st.success("No failed calls in this range.")
    else:
        data = common.frame(
            [
                {
                    "when": p.bucket,
                    "class": p.error_class,
                    "share": 100 * p.share,
                    "errors": p.errors,
                    "calls": p.requests,
                }
                for p in points
            ]
        )
        data["when"] = common.local_times(list(data["when"]), ctx.tz)
        unit = "Hour" if bucket == "hour" else "Quota day"
        common.chart(
            alt.Chart(data)
            .mark_bar()
            .encode(
                x=common.time_x("when", f"{unit} ({ctx.tz_label})"),
                y=alt.Y("share:Q", title="% of calls", stack="zero"),
                color=alt.Color("class:N", title="Error class"),
                tooltip=[
                    "class:N",
                    alt.Tooltip("share:Q", format=".1f", title="% of calls"),
                    "errors:Q",
                    "calls:Q",
                ],
            )
            .properties(height=300)
        )
        by_class = common.frame(
            [{"class": k, "failed calls": v} for k, v in totals.by_class.items()]
        )
        common.table(by_class, "failed calls by class")

    st.subheader("Recent failures")
    if not failures:
        st.info("No failures to list.")
        return
    table = common.frame(
        [
            {
                f"time ({ctx.tz_label})": common.fmt_time(f.started_at, ctx.tz, seconds=True),
                "key": f.key_label,
                "status": f.status_code if f.status_code is not None else "no response",
                "class": f.error_type,
                "message": f.message,
                "request id": f.request_id or "",
                "model": f.model or "",
                "endpoint": f.endpoint,
                "stream": "yes" if f.stream else "no",
                "attempt": f.attempt,
            }
            for f in failures
        ]
    )
    common.table(table, "recent failures", width="stretch")
    st.caption(f"The {len(failures)} newest failed calls in the range (attempt 0 = first try).")


common.run_page(render)
