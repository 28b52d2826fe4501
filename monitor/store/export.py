"""Reading a table out in full for export, streamed: the rows of a range of quota days come in
batches from a server-side cursor (Postgres) or a lazily stepped one (SQLite), so memory stays
the same whether the range holds a thousand rows or ten million."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Literal

from sqlalchemy import Column, Connection, Table, func, select

from monitor.store.models import ApiCall, DailyUsage, HourlyUsage, UTCDateTime

ExportTable = Literal["calls", "daily", "hourly"]
#: What a column holds, as a file format needs to know it.
ColumnKind = Literal["str", "int", "float", "bool", "date", "timestamp", "json"]
EXPORT_TABLES: Final[tuple[ExportTable, ...]] = ("calls", "daily", "hourly")
#: Rows fetched from the database at a time.
DEFAULT_FETCH_ROWS: Final = 10_000

#: Columns left out of an export: the surrogate key means nothing outside the database.
_INTERNAL_COLUMNS: Final = frozenset({"id"})


@dataclass(frozen=True, slots=True)
class ExportRange:
    """The rows to export: quota days ``first_day``..``last_day`` of one key or of all.

    ``start`` and ``end`` are the UTC instants that bound those days (``end`` exclusive); the
    daily table is filtered by its ``day`` column, the others by their timestamps.
    """

    first_day: date
    last_day: date
    start: datetime
    end: datetime
    key_id: str | None = None


def _table(name: ExportTable) -> Table:
    model = {"calls": ApiCall, "daily": DailyUsage, "hourly": HourlyUsage}[name]
    table = model.__table__
    assert isinstance(table, Table)
    return table


def export_columns(name: ExportTable) -> list[Column[Any]]:
    """The columns of table ``name`` an export holds, in the table's order."""
    return [c for c in _table(name).columns if c.name not in _INTERNAL_COLUMNS]


def column_kinds(name: ExportTable) -> list[tuple[str, ColumnKind]]:
    """``(name, kind)`` of each column an export of table ``name`` holds."""
    kinds: list[tuple[str, ColumnKind]] = []
    for column in export_columns(name):
        if isinstance(column.type, UTCDateTime):
            kinds.append((column.name, "timestamp"))
            continue
        python_type = column.type.python_type
        kind: ColumnKind = "json"  # labels and errors_by_class: JSON documents
        for candidate, candidate_kind in _PYTHON_KINDS:
            if issubclass(python_type, candidate):
                kind = candidate_kind
                break
        kinds.append((column.name, kind))
    return kinds


# bool before int: bool is a subclass of int
_PYTHON_KINDS: Final[tuple[tuple[type, ColumnKind], ...]] = (
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (date, "date"),
)


def _order_and_filter(name: ExportTable, span: ExportRange) -> tuple[Sequence[Any], list[Any]]:
    table = _table(name)
    columns = table.c
    if name == "calls":
        where = [columns.started_at >= span.start, columns.started_at < span.end]
        order: Sequence[Any] = (columns.started_at, columns.id)
    elif name == "hourly":
        where = [columns.hour >= span.start, columns.hour < span.end]
        order = (columns.hour, columns.key_id, columns.model, columns.stream)
    else:
        where = [columns.day >= span.first_day, columns.day <= span.last_day]
        order = (columns.day, columns.key_id)
    if span.key_id is not None:
        where.append(columns.key_id == span.key_id)
    return order, where


def count_rows(conn: Connection, name: ExportTable, span: ExportRange) -> int:
    """How many rows :func:`export_rows` would yield (for a progress bar)."""
    _, where = _order_and_filter(name, span)
    statement = select(func.count()).select_from(_table(name)).where(*where)
    return conn.execute(statement).scalar_one()


def export_rows(
    conn: Connection,
    name: ExportTable,
    span: ExportRange,
    *,
    fetch_rows: int | None = None,
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """The rows of table ``name`` in ``span``, oldest first, in batches of up to
    ``fetch_rows`` (default ``DEFAULT_FETCH_ROWS``); each row holds the values of
    :func:`export_columns`, converted as the models convert them (aware UTC datetimes, labels
    as dicts)."""
    fetch_rows = fetch_rows or DEFAULT_FETCH_ROWS
    order, where = _order_and_filter(name, span)
    statement = select(*export_columns(name)).where(*where).order_by(*order)
    result = conn.execution_options(stream_results=True, yield_per=fetch_rows).execute(statement)
    try:
        for batch in result.partitions(fetch_rows):
            yield [tuple(row) for row in batch]
    finally:
        result.close()
