"""Five-minute slices of ``api_calls`` (table ``usage_slices``): what lets a tick read minutes.

A slice row holds the figures and histograms of one ``(5-minute slice, key, model, stream)``
group, exactly as an ``hourly_usage`` row does for an hour, so an hour is the sum of its slices
(:func:`monitor.store.rollups.sum_rows`). The rollup keeps slices only from the hour its next
tick starts in; it finds the slices whose calls changed by comparing call counts (calls are
only ever added to the recent past), recomputes those from ``api_calls``, and rebuilds their
hours from slices.

>>> with engine.begin() as conn:  # doctest: +SKIP
...     counts = changed_slices(conn, start, since)
...     for first, end in runs_of(counts.changed):
...         write_slices(conn, first, end)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

from sqlalchemy import JSON, Connection, bindparam, text

from monitor.ledger.histogram import BUCKETS
from monitor.ledger.quota_day import hour_start
from monitor.ledger.totals import SLICE, HourlyKey, Totals, add_totals
from monitor.store.grouping import bin_sql, bind_params, calls_window, grouped_calls_sql, instant
from monitor.store.models import (
    LATENCY_HISTOGRAM,
    SUMMED_FIGURES,
    TTFT_HISTOGRAM,
    UTCDateTime,
)

__all__ = ["SliceCounts", "changed_slices", "delete_slices_before", "runs_of", "write_slices"]

_FIGURES: Final = (
    *SUMMED_FIGURES,
    "latency_min_ms",
    "latency_max_ms",
    "ttft_min_ms",
    "ttft_max_ms",
)
_KEYS: Final = ("slice_start", "key_id", "model", "stream")


class SliceCounts(NamedTuple):
    """What :func:`changed_slices` found: calls started at or after ``since`` (what the tick
    looked at), the slices whose calls differ from their stored rows, and the slices holding
    calls without a key (no slice row counts those), both in order."""

    scanned: int
    changed: list[datetime]
    keyless: list[datetime]


def changed_slices(conn: Connection, start: datetime, since: datetime) -> SliceCounts:
    """Slices from ``start`` on whose calls differ from their stored rows (and more, see
    :class:`SliceCounts`).

    One statement: a count of the calls per slice (no aggregation) beside the stored
    ``requests``.
    """
    binds, values = bind_params(start, None, None)
    rows = conn.execute(
        text(
            f"SELECT {bin_sql(conn, 'started_at', SLICE)} AS slice, count(key_id) AS calls, "
            "count(key_id) FILTER (WHERE started_at >= :since) AS recent, "
            "count(*) - count(key_id) AS keyless, NULL AS stored "
            "FROM api_calls WHERE started_at >= :start GROUP BY 1 "
            "UNION ALL SELECT slice_start, NULL, NULL, NULL, sum(requests) FROM usage_slices "
            "WHERE slice_start >= :start GROUP BY slice_start"
        ).bindparams(*binds, bindparam("since", type_=UTCDateTime())),
        {**values, "since": since},
    ).all()
    calls: dict[datetime, int] = {}
    stored: dict[datetime, int] = {}
    keyless: list[datetime] = []
    scanned = 0
    for slice_start, counted, recent, without_key, kept in rows:
        at = instant(slice_start)
        if kept is not None:
            stored[at] = int(kept)
            continue
        if counted:
            calls[at] = int(counted)
        if without_key:
            keyless.append(at)
        scanned += int(recent)
    changed = sorted(s for s in calls.keys() | stored.keys() if calls.get(s) != stored.get(s))
    return SliceCounts(scanned, changed, sorted(keyless))


def runs_of(slices: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Contiguous ``[first, end)`` ranges covering the sorted slice starts ``slices``."""
    runs: list[tuple[datetime, datetime]] = []
    for slice_start in slices:
        if runs and runs[-1][1] == slice_start:
            runs[-1] = (runs[-1][0], slice_start + SLICE)
        else:
            runs.append((slice_start, slice_start + SLICE))
    return runs


def write_slices(
    conn: Connection, start: datetime, end: datetime | None = None, *, hours: bool = False
) -> dict[HourlyKey, Totals]:
    """Recompute the slices in ``[start, end)`` (``None``: no end) from ``api_calls``.

    With ``hours``, also returns the slices written, added up per hourly group (percentiles
    left ``None``), so their hours need not read them again.
    """
    postgres = conn.dialect.name == "postgresql"
    binds, values = bind_params(start, end, None)
    until = "" if end is None else " AND slice_start < :end"
    conn.execute(
        text(f"DELETE FROM usage_slices WHERE slice_start >= :start{until}").bindparams(*binds),
        values,
    )
    grouped = grouped_calls_sql(
        conn, ["bin", "key_id", "model", "stream"], SLICE, calls_window(start, end, False)
    )

    def count(column: str, bucket: int) -> str:
        if postgres:
            return f"coalesce(CAST({column} ->> '{bucket}' AS BIGINT), 0)"
        return f"coalesce(json_extract({column}, '$.\"{bucket}\"'), 0)"

    empty = "CAST('{}' AS JSONB)" if postgres else "'{}'"
    selected = [
        "bin",
        "key_id",
        "model",
        "stream",
        *_FIGURES,
        f"coalesce(errors_by_class, {empty})",
        *[count("latency_counts", b) for b in range(len(LATENCY_HISTOGRAM))],
        *[count("ttft_counts", b) for b in range(len(TTFT_HISTOGRAM))],
    ]
    updates = ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS if name not in _KEYS)
    listed = ", ".join(_COLUMNS)
    # The rows written come back from the INSERT on Postgres; SQLite reads them again (older
    # versions have no RETURNING).
    returning = f" RETURNING {listed}" if hours and postgres else ""
    # A run that waited for another one may find rows it did not delete: it replaces them.
    written = conn.execute(
        text(
            f"INSERT INTO usage_slices ({listed}) "
            f"SELECT {', '.join(selected)} FROM ({grouped}) AS grouped WHERE true "
            f"ON CONFLICT ({', '.join(_KEYS)}) DO UPDATE SET {updates}{returning}"
        ).bindparams(*binds),
        values,
    )
    if not hours:
        return {}
    if not postgres:
        written = conn.execute(
            text(f"SELECT {listed} FROM usage_slices WHERE slice_start >= :start{until}")
            .bindparams(*binds)
            .columns(slice_start=UTCDateTime(), errors_by_class=JSON()),
            values,
        )
    return _hours_of(written)


_COLUMNS: Final = (*_KEYS, *_FIGURES, "errors_by_class", *LATENCY_HISTOGRAM, *TTFT_HISTOGRAM)


def _hours_of(rows: Iterable[Sequence[Any]]) -> dict[HourlyKey, Totals]:
    """Slice rows (columns as :data:`_COLUMNS`) added up per hourly group."""
    figures = len(_KEYS) + len(_FIGURES)
    hourly: dict[HourlyKey, Totals] = {}
    for row in rows:
        (
            requests,
            errors,
            input_tokens,
            output_tokens,
            cache_read_tokens,
            reasoning_tokens,
            total_tokens,
            uncached_input_tokens,
            cached_input_tokens,
            latency_min_ms,
            latency_max_ms,
            ttft_min_ms,
            ttft_max_ms,
        ) = row[len(_KEYS) : figures]
        by_class = row[figures]
        totals = Totals(
            requests=requests,
            errors=errors,
            errors_by_class=dict(sorted(by_class.items())),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read_tokens,
            reasoning_tokens=reasoning_tokens,
            total_tokens=total_tokens,
            uncached_input_tokens=uncached_input_tokens,
            cached_input_tokens=cached_input_tokens,
            latency_min_ms=latency_min_ms,
            latency_max_ms=latency_max_ms,
            ttft_min_ms=ttft_min_ms,
            ttft_max_ms=ttft_max_ms,
            latency_histogram=list(row[figures + 1 : figures + 1 + BUCKETS]),
            ttft_histogram=list(row[figures + 1 + BUCKETS : figures + 1 + 2 * BUCKETS]),
        )
        slice_start, key_id, model, stream = row[: len(_KEYS)]
        group = (key_id, hour_start(instant(slice_start)), model, bool(stream))
        hourly[group] = add_totals(hourly[group], totals) if group in hourly else totals
    return hourly


def delete_slices_before(conn: Connection, before: datetime) -> None:
    """Drop the slices no tick will need again (they start before ``before``)."""
    binds, values = bind_params(before, None, None)
    conn.execute(
        text("DELETE FROM usage_slices WHERE slice_start < :start").bindparams(*binds), values
    )
