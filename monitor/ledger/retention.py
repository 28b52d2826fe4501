"""Keeping ``api_calls`` in shape: day partitions made ahead, and raw calls past retention removed.

Run from every scheduler tick (:func:`monitor.ledger.jobs.run_tick`); cheap when there is nothing
to do.

- **Partitions ahead** (Postgres): the partitions of today … today +
  ``MONITOR_PARTITION_DAYS_AHEAD`` UTC days are created when missing; calls outside them land
  in the default partition.
- **Retention** (``MONITOR_RETENTION_DAYS``; unset keeps everything): raw calls of quota days older
  than that many days are removed. Postgres detaches and drops whole day partitions (and deletes
  stray rows from the default partition); SQLite deletes in batches of
  :data:`DELETE_BATCH_ROWS`, one transaction each, so writers are never held up for long.

``daily_usage`` and ``hourly_usage`` are never touched: the dashboard's history outlives the raw
calls. The cut-off applied is recorded in ``rollup_state``
(:data:`monitor.ledger.rollup.RETENTION_NAME`) so the rollup never recomputes a day whose raw
calls are partly gone, and it never passes the rollup's own watermark: calls not yet rolled up
are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import TYPE_CHECKING, Final

from monitor.ledger.quota_day import day_start, quota_day
from monitor.ledger.rollup import DEFAULT_LATE_WINDOW, RETENTION_NAME, ROLLUP_NAME
from monitor.safety import report_failure
from monitor.store import partitions as parts
from monitor.store import watermarks

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from monitor.config import Settings

logger = logging.getLogger("monitor.ledger.retention")

#: Rows deleted per transaction (SQLite, and stray rows of the Postgres default partition).
DELETE_BATCH_ROWS: Final = 10_000
#: At most this many batches per run; the rest waits for the next tick.
MAX_DELETE_BATCHES: Final = 100


def retention_cutoff(retention_days: int, tz: tzinfo, now: datetime) -> datetime:
    """The start (UTC) of the oldest quota day kept: today and the ``retention_days`` before it.

    >>> from zoneinfo import ZoneInfo
    >>> retention_cutoff(30, ZoneInfo("Asia/Shanghai"), datetime(2026, 11, 26, 3, tzinfo=UTC))
    datetime.datetime(2026, 10, 26, 16, 0, tzinfo=datetime.timezone.utc)
    """
    first_kept = quota_day(now, tz) - timedelta(days=retention_days)
    return day_start(first_kept, tz).astimezone(UTC)


def utc_midnight_before(moment: datetime) -> datetime:
    """The UTC midnight at or before ``moment``: where a Postgres day partition can be cut."""
    return datetime.combine(moment.astimezone(UTC).date(), time(), tzinfo=UTC)


def days_ahead(now: datetime, ahead: int) -> list[date]:
    """The UTC days today … today + ``ahead``."""
    today = now.astimezone(UTC).date()
    return [today + timedelta(days=n) for n in range(ahead + 1)]


@dataclass(frozen=True, slots=True)
class StorageResult:
    """What one :func:`maintain_storage` pass did; ``cutoff`` is ``None`` when nothing is kept
    out (no retention set, or no rollup yet)."""

    partitions_created: int = 0
    partitions_dropped: int = 0
    rows_deleted: int = 0
    cutoff: datetime | None = None

    def summary(self) -> str:
        """A few words for the tick's log line; empty when nothing changed."""
        done = []
        if self.partitions_created:
            done.append(f"{self.partitions_created} partitions created")
        if self.partitions_dropped:
            done.append(f"{self.partitions_dropped} partitions dropped")
        if self.rows_deleted:
            done.append(f"{self.rows_deleted} old calls deleted")
        return ", ".join(done)


def maintain_storage(
    engine: Engine, settings: Settings, now: datetime | None = None
) -> StorageResult:
    """Create the partitions ahead, then apply retention. Failures are logged, never raised."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    with engine.connect() as conn:
        partitioned = parts.is_partitioned(conn)
    created = _create_ahead(engine, now, settings.partition_days_ahead) if partitioned else 0
    if settings.retention_days is None:
        return StorageResult(partitions_created=created)
    cutoff = _cutoff(engine, settings.retention_days, settings.tz, now, partitioned)
    if cutoff is None:
        return StorageResult(partitions_created=created)
    dropped = _drop_before(engine, cutoff) if partitioned else 0
    deleted = _delete_before(engine, cutoff)
    return StorageResult(created, dropped, deleted, cutoff)


def _create_ahead(engine: Engine, now: datetime, ahead: int) -> int:
    created = 0
    for day in days_ahead(now, ahead):
        try:
            with engine.begin() as conn:
                created += parts.create_day_partition(conn, day)
        except Exception as exc:
            report_failure(f"create the api_calls partition of {day}", exc)
    if created:
        logger.info("created %d api_calls day partitions", created)
    return created


def _cutoff(
    engine: Engine, retention_days: int, tz: tzinfo, now: datetime, partitioned: bool
) -> datetime | None:
    """The cut-off to apply now, recorded before anything is removed; ``None`` to wait."""
    wanted = retention_cutoff(retention_days, tz, now)
    if partitioned:
        wanted = utc_midnight_before(wanted)  # whole partitions only; a few hours more are kept
    with engine.begin() as conn:
        rolled = watermarks.get_watermark(conn, ROLLUP_NAME)
        if rolled is None:
            return None  # nothing rolled up yet: removing calls now would lose them for good
        cutoff = min(wanted, rolled - DEFAULT_LATE_WINDOW)
        recorded = watermarks.get_watermark(conn, RETENTION_NAME)
        if recorded is not None:
            cutoff = max(cutoff, recorded)
        if recorded != cutoff:
            watermarks.set_watermark(conn, RETENTION_NAME, cutoff, now=now)
    return cutoff


def _drop_before(engine: Engine, cutoff: datetime) -> int:
    with engine.connect() as conn:
        names = parts.partitions(conn)
    dropped = 0
    for name in names:
        day = parts.partition_day(name)
        if day is None or parts.day_range(day)[1] > cutoff:
            continue
        try:
            with engine.begin() as conn:
                parts.drop_partition(conn, name)
        except Exception as exc:
            report_failure(f"drop the api_calls partition {name}", exc)
            continue
        dropped += 1
        logger.info("retention: dropped partition %s", name)
    return dropped


def _delete_before(engine: Engine, cutoff: datetime) -> int:
    deleted = 0
    try:
        for _ in range(MAX_DELETE_BATCHES):
            with engine.begin() as conn:
                batch = parts.delete_calls_before(conn, cutoff, DELETE_BATCH_ROWS)
            deleted += batch
            if batch < DELETE_BATCH_ROWS:
                break
    except Exception as exc:
        report_failure("delete calls past retention", exc)
    if deleted:
        logger.info("retention: deleted %d calls started before %s", deleted, cutoff)
    return deleted
