"""The dashboard's summaries: ``hourly_usage`` summed over keys, and the values seen in calls.

The rollup job calls :func:`refresh_summaries` once it has written its hourly rows, in the same
transaction (a tick: :func:`refresh_hours` for the hours it rewrote, and
:func:`note_seen_between` for the slices it recomputed), and the dashboard reads them through
:func:`hour_totals`, :func:`hour_errors`, :func:`summary_models` and :func:`seen_values`:

- ``usage_by_hour``: one row per UTC hour, model and streaming mode, the sums of that hour's
  ``hourly_usage`` rows over keys, with each percentile as ``sum(value * requests)`` and the
  requests it is known for, so the request-weighted mean of any set of rows is still exact.
- ``errors_by_hour``: failed calls per hour, model, mode and error class, as rows (the JSON
  documents of ``hourly_usage`` are unpacked once, when written, not on every read).
- ``seen_values``: every endpoint and label name seen in ``api_calls``, with when it was last
  seen, so the dashboard's choices never scan raw calls.

The hourly summaries are derived from ``hourly_usage`` alone (never from raw calls), so they equal
its sums however those rows were computed. A refresh deletes and rewrites every summary row from
the given hour on (or of the given hours), then upserts, so a second rollup running at the same
time leaves the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Final, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Row,
    Table,
    and_,
    case,
    delete,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy import cast as sql_cast

from monitor.store.dialect import dialect_insert
from monitor.store.models import (
    NO_LABELS,
    ROLLUP_KEY_CHARS,
    SUMMED_FIGURES,
    WEIGHTED_PERCENTILES,
    ApiCall,
    ErrorsByHour,
    HourlyUsage,
    SeenValue,
    UsageByHour,
)

usage_by_hour: Final = cast(Table, UsageByHour.__table__)
errors_by_hour: Final = cast(Table, ErrorsByHour.__table__)
seen_values_table: Final = cast(Table, SeenValue.__table__)
hourly_usage: Final = cast(Table, HourlyUsage.__table__)

#: ``seen_values.kind`` of an endpoint path, and of a ``monitor.tags`` label name.
ENDPOINT: Final = "endpoint"
LABEL: Final = "label"

#: The ``hourly_usage`` figures that ``usage_by_hour`` sums.
SUMMED: Final = SUMMED_FIGURES

__all__ = [
    "ENDPOINT",
    "LABEL",
    "SUMMED",
    "hour_errors",
    "hour_totals",
    "json_entries",
    "note_seen_between",
    "quota_day_of",
    "refresh_hours",
    "refresh_summaries",
    "seen_values",
    "summary_models",
]


def json_entries(conn: Connection, document: Any) -> Any:
    """The ``(key, value)`` entries of a JSON object column, as a table to join (values as text)."""
    each = (
        func.jsonb_each_text(document)
        if conn.dialect.name == "postgresql"
        else func.json_each(document)
    )
    return each.table_valued("key", "value").alias("entry")


def refresh_summaries(
    conn: Connection, first_hour: datetime | None, *, calls_since: datetime | None
) -> None:
    """Rewrite the hourly summaries from ``first_hour`` on (all when ``None``) from
    ``hourly_usage``, and note the endpoints and label names of the calls since ``calls_since``.

    Call it in the rollup's transaction, after the hourly rows from ``first_hour`` on are written.

    >>> refresh_summaries(conn, datetime(2026, 11, 25, 8, tzinfo=UTC), calls_since=since)
    ... # doctest: +SKIP
    """
    _refresh_totals(conn, lambda column: _since(column, first_hour))
    _refresh_errors(conn, lambda column: _since(column, first_hour))
    _note_seen(conn, [] if calls_since is None else [ApiCall.started_at >= calls_since])


def refresh_hours(conn: Connection, hours: Sequence[datetime]) -> None:
    """Rewrite the hourly summaries of the UTC ``hours`` (their ``hourly_usage`` rows rewritten
    in this transaction): what a tick changed, however many hours lie between them."""
    if hours:
        _refresh_totals(conn, lambda column: column.in_(list(hours)))
        _refresh_errors(conn, lambda column: column.in_(list(hours)))


def note_seen_between(conn: Connection, spans: Sequence[tuple[datetime, datetime]]) -> None:
    """Note the endpoints and label names of the calls started in any of ``spans``
    (``[start, end)`` ranges)."""
    if spans:
        started = ApiCall.started_at
        _note_seen(conn, [or_(*(and_(started >= start, started < end) for start, end in spans))])


def _since(column: Any, first_hour: datetime | None) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], true() if first_hour is None else column >= first_hour)


#: Which rows of a table to rewrite, given its hour column.
HourWindow = Callable[[Any], ColumnElement[bool]]


def _refresh_totals(conn: Connection, window: HourWindow) -> None:
    h = hourly_usage.c
    group = [h.hour, h.model, h.stream]
    weighted: list[Any] = []
    for name in WEIGHTED_PERCENTILES:
        weighted.append(func.sum(h[name] * h.requests))
        weighted.append(func.coalesce(func.sum(case((h[name].is_not(None), h.requests))), 0))
    query = (
        select(*group, *[func.sum(h[name]) for name in SUMMED], *weighted)
        .where(window(h.hour))
        .group_by(*group)
    )
    names = [
        "hour",
        "model",
        "stream",
        *SUMMED,
        *[f"{name}_{part}" for name in WEIGHTED_PERCENTILES for part in ("weighted", "weight")],
    ]
    conn.execute(delete(usage_by_hour).where(window(usage_by_hour.c.hour)))
    _upsert_from(conn, usage_by_hour, names, query, ["hour", "model", "stream"])


def _refresh_errors(conn: Connection, window: HourWindow) -> None:
    h = hourly_usage.c
    entries = json_entries(conn, h.errors_by_class)
    group = [h.hour, h.model, h.stream, entries.c.key]
    query = (
        select(*group, func.sum(sql_cast(entries.c.value, BigInteger)))
        .select_from(hourly_usage)
        .join(entries, true())
        .where(window(h.hour))
        .group_by(*group)
    )
    names = ["hour", "model", "stream", "error_class", "errors"]
    conn.execute(delete(errors_by_hour).where(window(errors_by_hour.c.hour)))
    _upsert_from(conn, errors_by_hour, names, query, names[:4])


def _upsert_from(
    conn: Connection, table: Table, names: Sequence[str], query: Any, keys: Sequence[str]
) -> None:
    statement = dialect_insert(conn, table).from_select(list(names), query)
    updates = {name: statement.excluded[name] for name in names if name not in keys}
    conn.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=updates))


def _note_seen(conn: Connection, window: Sequence[ColumnElement[bool]]) -> None:
    """Note the endpoints (of every call) and label names (of calls with a key) of the calls
    matching ``window`` (conditions on ``api_calls``; none: every call)."""
    c = ApiCall
    endpoints = (
        select(literal(ENDPOINT), c.endpoint, func.max(c.started_at))
        .where(*window)
        .group_by(c.endpoint)
    )
    entries = json_entries(conn, c.labels)
    dialect = conn.dialect.name
    # Repeats the condition of the partial index on labelled calls: only they are read.
    labelled = [c.key_id.is_not(None), c.labels != literal_column(NO_LABELS[dialect]), *window]
    if dialect == "postgresql":  # jsonb_each_text rejects anything but an object
        labelled.append(func.jsonb_typeof(c.labels) == "object")
    labels = (
        select(literal(LABEL), entries.c.key, func.max(c.started_at))
        .select_from(ApiCall)
        .join(entries, true())
        .where(*labelled)
        .group_by(entries.c.key)
    )
    # Read first, then write the few values found: Postgres scans in parallel for a SELECT,
    # never for an INSERT … SELECT (a first rollup reads every call here).
    latest_of: dict[tuple[str, str], datetime] = {}
    for kind, value, last_seen in conn.execute(union_all(endpoints, labels)):
        entry = (kind, value[:ROLLUP_KEY_CHARS])  # two long values may share their start
        if entry not in latest_of or last_seen > latest_of[entry]:
            latest_of[entry] = last_seen
    seen = [
        {"kind": kind, "value": value, "last_seen": last_seen}
        for (kind, value), last_seen in latest_of.items()
    ]
    if not seen:
        return
    # Two kinds, each grouped by value: no row is offered twice to the upsert.
    statement = dialect_insert(conn, seen_values_table).values(seen)
    latest = func.greatest if conn.dialect.name == "postgresql" else func.max
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["kind", "value"],
            set_={"last_seen": latest(seen_values_table.c.last_seen, statement.excluded.last_seen)},
        )
    )


# --- reading ----------------------------------------------------------------------------------


def quota_day_of(hour: Any, zone: str) -> ColumnElement[date]:
    """Postgres SQL: the calendar day in time zone ``zone`` (an IANA name) of instant ``hour``."""
    return sql_cast(func.timezone(zone, hour), Date)


def hour_totals(
    conn: Connection,
    start: datetime,
    end: datetime,
    models: Sequence[str] = (),
    *,
    day_zone: str | None = None,
) -> list[Row[Any]]:
    """``usage_by_hour`` in ``[start, end)`` (of ``models`` if given), oldest first.

    Columns: ``hour, model, stream``, the :data:`SUMMED` figures, then each of
    :data:`~monitor.store.models.WEIGHTED_PERCENTILES` as its request-weighted mean (``None``
    when no row knows it). With ``day_zone`` (Postgres only) the hours are summed per calendar
    day of that time zone, and ``hour`` is that day (a ``date``).
    """
    u = usage_by_hour.c
    when = u.hour if day_zone is None else quota_day_of(u.hour, day_zone)
    means = [
        (func.sum(u[f"{name}_weighted"]) / func.nullif(func.sum(u[f"{name}_weight"]), 0)).label(
            name
        )
        for name in WEIGHTED_PERCENTILES
    ]
    sums = [func.sum(u[name]).label(name) for name in SUMMED]
    group = [when, u.model, u.stream]
    query = select(when.label("hour"), u.model, u.stream, *sums, *means).where(
        u.hour >= start, u.hour < end
    )
    if models:
        query = query.where(u.model.in_(models))
    return list(conn.execute(query.group_by(*group).order_by(*group)).all())


def hour_errors(
    conn: Connection,
    start: datetime,
    end: datetime,
    models: Sequence[str] = (),
    *,
    day_zone: str | None = None,
) -> list[Row[Any]]:
    """``errors_by_hour`` rows ``(hour, model, stream, error_class, errors)`` in the range,
    summed per calendar day of ``day_zone`` if given (as :func:`hour_totals`)."""
    e = errors_by_hour.c
    when = e.hour if day_zone is None else quota_day_of(e.hour, day_zone)
    group = [when, e.model, e.stream, e.error_class]
    query = select(
        when.label("hour"), e.model, e.stream, e.error_class, func.sum(e.errors).label("errors")
    ).where(e.hour >= start, e.hour < end)
    if models:
        query = query.where(e.model.in_(models))
    return list(cast(Sequence[Row[Any]], conn.execute(query.group_by(*group)).all()))


def summary_models(conn: Connection) -> list[str]:
    """Every model in the hourly rollup, sorted ("" is a call whose model was not recorded)."""
    return sorted(conn.execute(select(usage_by_hour.c.model).distinct()).scalars())


def seen_values(conn: Connection, kind: str, since: datetime | None = None) -> list[str]:
    """The values of ``kind`` (:data:`ENDPOINT`, :data:`LABEL`) last seen at or after ``since``."""
    s = seen_values_table.c
    query = select(s.value).where(s.kind == kind)
    if since is not None:
        query = query.where(s.last_seen >= since)
    return sorted(conn.execute(query).scalars())
