"""Latency: p50/p95/p99 latency and time to first token over time, by model and mode."""

from __future__ import annotations

import altair as alt
import streamlit as st

from monitor.dashboard import common
from monitor.queries import LatencyPoint, bucket_for, hourly_rows, latency_series, latency_summary

PERCENTILES = {"p50": "latency_p50_ms", "p95": "latency_p95_ms", "p99": "latency_p99_ms"}
TTFT = {"p50": "ttft_p50_ms", "p95": "ttft_p95_ms"}


def _series(point: LatencyPoint) -> str:
    return f"{point.model or '(not recorded)'} · {'streamed' if point.stream else 'not streamed'}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def render(ctx: common.Context) -> None:
    st.title("Latency")
    st.caption(common.filters_caption(ctx))
    with ctx.engine.connect() as conn:
        rows = hourly_rows(conn, ctx.filters, ctx.tz, error_classes=False)
    if not rows:
        st.info("No calls in this range.")
        return
    bucket = bucket_for(ctx.filters)
    points = latency_series(rows, bucket, ctx.tz)
    unit = "Hour" if bucket == "hour" else "Quota day"
    which = st.radio("Percentile", list(PERCENTILES), index=1, horizontal=True, key="lat_pct")

    st.subheader(f"Latency {which} (whole call)")
    data = common.frame(
        [
            {"when": p.bucket, "series": _series(p), "ms": getattr(p, PERCENTILES[str(which)])}
            for p in points
            if getattr(p, PERCENTILES[str(which)]) is not None
        ],
        ["when", "series", "ms"],
    )
    data["when"] = common.local_times(list(data["when"]), ctx.tz)
    common.chart(_lines(data, f"{unit} ({ctx.tz_label})", f"Latency {which} (ms)"))

    st.subheader("Time to first token (streamed calls)")
    ttft_key = TTFT.get(str(which), "ttft_p95_ms")
    ttft = common.frame(
        [
            {"when": p.bucket, "series": _series(p), "ms": getattr(p, ttft_key)}
            for p in points
            if p.stream and getattr(p, ttft_key) is not None
        ],
        ["when", "series", "ms"],
    )
    if ttft.empty:
        st.info("No streamed calls in this range.")
    else:
        ttft["when"] = common.local_times(list(ttft["when"]), ctx.tz)
        label = "p95" if which == "p99" else which
        common.chart(_lines(ttft, f"{unit} ({ctx.tz_label})", f"Time to first token {label} (ms)"))

    st.subheader("Over the whole range")
    summary = common.frame(
        [
            {
                "model": p.model or "(not recorded)",
                "streamed": "yes" if p.stream else "no",
                "calls": p.requests,
                "latency p50": _ms(p.latency_p50_ms),
                "latency p95": _ms(p.latency_p95_ms),
                "latency p99": _ms(p.latency_p99_ms),
                "TTFT p50": _ms(p.ttft_p50_ms),
                "TTFT p95": _ms(p.ttft_p95_ms),
            }
            for p in latency_summary(rows)
        ]
    )
    common.table(summary, "latency summary", width="stretch")
    st.caption(
        "From the hourly rollup. Where a point combines several keys or hours, it shows the "
        "call-weighted mean of their percentiles."
    )


def _lines(data: object, x_title: str, y_title: str) -> alt.Chart:
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=common.time_x("when", x_title),
            y=alt.Y("ms:Q", title=y_title),
            color=alt.Color("series:N", title="Model · mode", legend=alt.Legend(orient="bottom")),
            tooltip=["series:N", alt.Tooltip("ms:Q", format=",.0f")],
        )
        .properties(height=280)
    )


common.run_page(render)
