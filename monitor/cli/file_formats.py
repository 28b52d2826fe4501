"""Rows out to files a spreadsheet or a notebook opens: CSV, JSON Lines and Parquet, each written
batch by batch, so a file of any size takes the memory of one batch.

Values are written the same way in every format: timestamps in UTC ISO 8601 (Parquet:
``timestamp[us, UTC]``), days as ``YYYY-MM-DD``, JSON documents (labels, errors by class) as JSON
text in CSV and Parquet and as objects in JSON Lines, missing values empty (CSV) or null.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import IO, Any, Final, Literal, Protocol

from monitor.store.export import ColumnKind

FileFormat = Literal["csv", "jsonl", "parquet"]
FILE_FORMATS: Final[tuple[FileFormat, ...]] = ("csv", "jsonl", "parquet")
#: Formats written as bytes (the others as UTF-8 text).
BINARY_FORMATS: Final = frozenset({"parquet"})

Row = Sequence[Any]


class RowWriter(Protocol):
    def write(self, rows: Sequence[Row]) -> None: ...

    def close(self) -> None: ...


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _csv_value(value: Any, kind: ColumnKind) -> Any:
    """One value as CSV text.

    >>> from datetime import UTC, datetime
    >>> _csv_value(datetime(2026, 3, 1, 8, 30, tzinfo=UTC), "timestamp")
    '2026-03-01T08:30:00+00:00'
    >>> _csv_value(True, "bool"), _csv_value(None, "int"), _csv_value({"a": "b"}, "json")
    ('true', '', '{"a":"b"}')
    """
    if value is None:
        return ""
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("timestamp", "date"):
        return value.isoformat()
    if kind == "json":
        return _json_text(value)
    return value


class CsvRows:
    """A header line, then one line per row."""

    def __init__(self, out: IO[str], columns: Sequence[tuple[str, ColumnKind]]) -> None:
        self._writer = csv.writer(out, lineterminator="\n")
        self._kinds = [kind for _, kind in columns]
        self._writer.writerow([name for name, _ in columns])

    def write(self, rows: Sequence[Row]) -> None:
        kinds = self._kinds
        self._writer.writerows(
            [_csv_value(value, kind) for value, kind in zip(row, kinds, strict=True)]
            for row in rows
        )

    def close(self) -> None:
        pass


def _json_default(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"cannot write a {type(value).__name__} to JSON")


class JsonLinesRows:
    """One JSON object per line, keyed by column name."""

    def __init__(self, out: IO[str], columns: Sequence[tuple[str, ColumnKind]]) -> None:
        self._out = out
        self._names = [name for name, _ in columns]

    def write(self, rows: Sequence[Row]) -> None:
        names = self._names
        self._out.writelines(
            json.dumps(
                dict(zip(names, row, strict=True)),
                default=_json_default,
                ensure_ascii=False,
                separators=(",", ":"),
            )
            + "\n"
            for row in rows
        )

    def close(self) -> None:
        pass


class ParquetRows:
    """A Parquet file, one row group per batch (pyarrow, which the dashboard's Streamlit
    installs)."""

    def __init__(self, out: IO[bytes], columns: Sequence[tuple[str, ColumnKind]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        types = {
            "str": pa.string(),
            "int": pa.int64(),
            "float": pa.float64(),
            "bool": pa.bool_(),
            "date": pa.date32(),
            "timestamp": pa.timestamp("us", tz="UTC"),
            "json": pa.string(),
        }
        self._schema = pa.schema([(name, types[kind]) for name, kind in columns])
        self._json_columns = [i for i, (_, kind) in enumerate(columns) if kind == "json"]
        self._writer = pq.ParquetWriter(out, self._schema)

    def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        values = [list(column) for column in zip(*rows, strict=True)]
        for index in self._json_columns:
            values[index] = [None if v is None else _json_text(v) for v in values[index]]
        batch = self._pa.RecordBatch.from_arrays(
            [self._pa.array(v, type=f.type) for v, f in zip(values, self._schema, strict=True)],
            schema=self._schema,
        )
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


def row_writer(
    file_format: FileFormat, out: IO[Any], columns: Sequence[tuple[str, ColumnKind]]
) -> RowWriter:
    """The writer of ``file_format`` on ``out`` (bytes for Parquet, text otherwise)."""
    if file_format == "csv":
        return CsvRows(out, columns)
    if file_format == "jsonl":
        return JsonLinesRows(out, columns)
    return ParquetRows(out, columns)
