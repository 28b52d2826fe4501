"""What every page shares: settings, the engine, the filters, time zones, charts, refresh.

Pages read the database only through :mod:`monitor.queries`; nothing here holds SQL.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import altair as alt
import pandas as pd
import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from monitor.config import ConfigError, Settings, load_settings
from monitor.ledger.quota_day import quota_day
from monitor.queries import (
    DatabaseStatus,
    Filters,
    StoreError,
    endpoint_choices,
    key_choices,
    make_engine,
    model_choices,
)

#: Markdown (and Streamlit's own ``:color[…]``) may read any ASCII punctuation as syntax; a
#: backslash before it always means the character itself.
_MARKDOWN_SYNTAX: Final = re.compile(f"([{re.escape(string.punctuation)}])")
RANGES: Final = {"Today": 1, "7 days": 7, "30 days": 30, "90 days": 90}
REFRESH_CHOICES: Final = {"off": None, "30 s": 30, "1 min": 60, "5 min": 300}
DEFAULT_REFRESH: Final = "1 min"
CONTEXT_KEY: Final = "_dashboard_context"


@dataclass(frozen=True)
class Context:
    """What a page needs, rebuilt by ``app.py`` on every run."""

    settings: Settings
    engine: Engine
    filters: Filters
    key_labels: dict[str, str]
    refresh_s: int | None

    @property
    def tz(self) -> ZoneInfo:
        return self.settings.tz

    @property
    def tz_label(self) -> str:
        return zone_label(self.tz)

    def key_label(self, key_id: str | None) -> str:
        if key_id is None:
            return "no key"
        return self.key_labels.get(key_id, key_id[:12])


# --- settings, engine, access --------------------------------------------------------------


def settings_or_stop() -> Settings:
    """The settings from ``MONITOR_*`` (read on every run), or an error box and stop."""
    try:
        return load_settings()
    except ConfigError as exc:
        st.error(f"The monitor's configuration is not valid: {exc}")
        st.stop()
        raise  # st.stop() does not return; this line is for the type checker


@st.cache_resource(show_spinner=False)
def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per database URL, shared by every viewer."""
    return make_engine(url)


def as_text(value: object) -> str:
    r"""``value`` for a place Streamlit renders as Markdown (titles, captions, labels): shown as
    written on one line, never as a link, an image or formatting. Names, models, endpoints and
    messages come from traffic or from whoever registered a key.

    >>> print(as_text("**[x](https://example.com)**"))
    \*\*\[x\]\(https\:\/\/example\.com\)\*\*
    """
    return _MARKDOWN_SYNTAX.sub(r"\\\1", " ".join(str(value).split()))


# --- time zones ----------------------------------------------------------------------------


def zone_label(tz: tzinfo, at: datetime | None = None) -> str:
    """``Beijing time (UTC+8)`` for Asia/Shanghai, else ``<zone> (UTC±h)``."""
    offset = (at or datetime.now(UTC)).astimezone(tz).utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    utc = f"UTC{sign}{hours}" + (f":{mins:02d}" if mins else "")
    name = str(tz)
    if name in ("UTC", "Etc/UTC", "Universal", "Zulu"):
        return "UTC"
    if name in ("Asia/Shanghai", "Asia/Chongqing", "PRC"):
        return f"Beijing time ({utc})"
    return f"{name} ({utc})"


def viewer_zone() -> tzinfo | None:
    """The browser's time zone when Streamlit knows it, else ``None``."""
    name = getattr(st.context, "timezone", None)
    if not name:
        return None
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def fmt_time(moment: datetime | None, tz: tzinfo, *, seconds: bool = False) -> str:
    if moment is None:
        return "–"
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else ""))


def fmt_span(span: timedelta) -> str:
    minutes = max(int(span.total_seconds()) // 60, 0)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def local_times(moments: list[datetime], tz: tzinfo) -> list[datetime]:
    """Aware instants as naive wall-clock times of ``tz``: charted on a UTC scale they read as
    ``tz`` time whatever the browser's own zone (see :func:`time_x`)."""
    return [m.astimezone(tz).replace(tzinfo=None) for m in moments]


def time_x(field: str, title: str) -> alt.X:
    """A time axis that shows the values as given (wall-clock), not in the browser's zone."""
    return alt.X(f"{field}:T", title=title, scale=alt.Scale(type="utc"))


def chart(figure: alt.Chart | alt.LayerChart) -> None:
    st.altair_chart(figure, width="stretch")


# --- filters -------------------------------------------------------------------------------


def sidebar_filters(settings: Settings, engine: Engine) -> Context:
    """The filters in the sidebar (kept in ``st.session_state`` across pages) and the context."""
    with engine.connect() as conn:
        keys = key_choices(conn)
        models = model_choices(conn)
        endpoints = endpoint_choices(conn)
    labels = {choice.key_id: choice.label for choice in keys}
    today = quota_day(datetime.now(UTC), settings.tz)
    with st.sidebar:
        st.header("Filters")
        range_name = st.radio(
            "Date range (quota days)",
            [*RANGES, "Custom"],
            index=1,
            horizontal=True,
            key="f_range",
        )
        if range_name == "Custom":
            picked = st.date_input(
                "From – to",
                value=(today - timedelta(days=6), today),
                max_value=today,
                key="f_dates",
            )
            start, end = _date_pair(picked, today)
        else:
            days = RANGES[str(range_name)]
            start, end = today - timedelta(days=days - 1), today
        key_ids = st.multiselect(
            "Keys",
            [c.key_id for c in keys],
            format_func=lambda key_id: labels.get(key_id, key_id),
            key="f_keys",
            placeholder="All keys",
        )
        chosen_models = st.multiselect(
            "Models",
            models,
            format_func=lambda m: m or "(not recorded)",
            key="f_models",
            placeholder="All models",
        )
        chosen_endpoints = st.multiselect(
            "Endpoints", endpoints, key="f_endpoints", placeholder="All endpoints"
        )
        st.caption(f"Quota days run midnight to midnight, {zone_label(settings.tz)}.")
        st.divider()
        refresh = st.selectbox(
            "Auto-refresh",
            list(REFRESH_CHOICES),
            index=list(REFRESH_CHOICES).index(DEFAULT_REFRESH),
            key="f_refresh",
        )
    filters = Filters(
        start=start,
        end=end,
        key_ids=tuple(k for k in key_ids if k in labels),
        models=tuple(m for m in chosen_models if m in models),
        endpoints=tuple(e for e in chosen_endpoints if e in endpoints),
    )
    context = Context(settings, engine, filters, labels, REFRESH_CHOICES[str(refresh)])
    st.session_state[CONTEXT_KEY] = context
    return context


def _date_pair(picked: Any, today: date) -> tuple[date, date]:
    if isinstance(picked, tuple | list):
        if len(picked) == 2:
            return picked[0], picked[1]
        if len(picked) == 1:
            return picked[0], picked[0]
        return today, today
    if isinstance(picked, date):
        return picked, picked
    return today, today


def filters_caption(ctx: Context) -> str:
    f = ctx.filters
    parts = [f"{f.start} to {f.end}" if f.days > 1 else f"{f.start}"]
    if f.key_ids:
        parts.append("keys: " + ", ".join(as_text(ctx.key_label(k)) for k in f.key_ids))
    if f.models:
        parts.append("models: " + ", ".join(as_text(m or "(not recorded)") for m in f.models))
    if f.endpoints:
        parts.append("endpoints: " + ", ".join(as_text(e) for e in f.endpoints))
    return " · ".join(parts) + f" · quota days in {ctx.tz_label}"


# --- pages ---------------------------------------------------------------------------------


def run_page(render: Callable[[Context], None]) -> None:
    """Render a page inside a fragment that reruns on the auto-refresh interval.

    A database that fails mid-way shows a message rather than a traceback.
    """
    ctx: Context | None = st.session_state.get(CONTEXT_KEY)
    if ctx is None:
        st.info("Open the dashboard from its main address to choose filters.")
        return

    @st.fragment(run_every=ctx.refresh_s)
    def body() -> None:
        current: Context = st.session_state.get(CONTEXT_KEY, ctx)
        try:
            render(current)
        except (StoreError, SQLAlchemyError, OSError) as exc:
            st.error(
                "The database stopped answering while this page was read. "
                "It will be tried again on the next refresh."
            )
            st.caption(as_text(str(exc).splitlines()[0][:300]))
        if current.refresh_s:
            st.caption(
                f"Refreshed {fmt_time(datetime.now(UTC), current.tz, seconds=True)} "
                f"{current.tz_label}; again every {current.refresh_s} s."
            )

    body()


def frame(rows: list[dict[str, Any]], columns: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def table(data: pd.DataFrame, name: str, **options: Any) -> None:
    """``data`` as a table, with a button under it that downloads it as ``<name>.csv`` (the
    columns and values as shown). ``name`` is unique on the page: it also keys the button."""
    st.dataframe(data, hide_index=True, **options)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "table"
    st.download_button(
        "Download CSV",
        data.to_csv(index=False).encode("utf-8"),
        file_name=f"{slug}.csv",
        mime="text/csv",
        key=f"download-{slug}",
    )


# --- friendly pages for an empty or unreachable database ----------------------------------

INSTRUMENT_SNIPPET: Final = """\
import monitor
from openai import OpenAI
from anthropic import Anthropic

openai_client = monitor.instrument(
    OpenAI(base_url="https://api.longcat.chat/openai", api_key=LONGCAT_API_KEY)
)
anthropic_client = monitor.instrument(
    Anthropic(base_url="https://api.longcat.chat/anthropic", api_key=LONGCAT_API_KEY)
)

with monitor.tags(feature="search", user="alice"):   # optional labels
    openai_client.chat.completions.create(model="LongCat-Flash-Chat", messages=[...])
"""


def show_getting_started(status: DatabaseStatus) -> None:
    st.title("LongCat usage monitor")
    st.info(f"No calls recorded yet in `{status.where}`.")
    st.subheader("Record your first calls")
    st.markdown(
        "Wrap the client you already use: every call is then recorded (tokens, errors, "
        "latency), never the API key itself."
    )
    st.code(INSTRUMENT_SNIPPET, language="python")
    st.markdown(
        "Point every process at the same database with `MONITOR_DATABASE_URL` "
        "(an SQLite file on one machine, Postgres for a team), then keep the totals and "
        "alerts current with `longcat-monitor scheduler` (or `longcat-monitor tick` from cron)."
    )
    st.markdown("Name your keys and set their quotas:")
    st.code("longcat-monitor keys add search --quota 5000000 --email ops@example.com", "bash")
    st.markdown("Or see it all working on made-up traffic, with no API key:")
    st.code("longcat-monitor demo", language="bash")


def show_database_problem(status: DatabaseStatus) -> None:
    st.title("LongCat usage monitor")
    st.error(f"The dashboard cannot read its database at `{status.where}`.")
    st.markdown(as_text(status.message) if status.message else "The database did not answer.")
    st.markdown(
        "Check `MONITOR_DATABASE_URL` and that the database server is running; for Postgres, "
        "bring the schema up to date with `longcat-monitor db upgrade`. "
        "This page tries again on its own."
    )
