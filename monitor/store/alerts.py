"""The alert ledger (``alert_ledger``): what was decided, claimed, sent, retried or skipped.

The ledger is what makes e-mail exactly-once across processes and hosts:

1. A decided alert is *inserted* (``INSERT … ON CONFLICT DO NOTHING`` on the unique
   ``(key_id, day, rule, threshold)``); only one process's insert lands, whatever runs at once.
   The row holds the rendered subject, bodies and recipients, so every attempt sends the same.
2. Before sending, a process *claims* the row with a compare-and-set ``UPDATE`` (status and attempt
   count as read); only one claim can succeed. The row is then ``sending``.
3. After the SMTP server accepts it the row is ``sent``; after a failure ``retrying`` with
   ``next_attempt_at`` backed off exponentially, and ``failed`` after the last attempt.
   A row left ``sending`` by a crashed process longer than the lease is claimed again.

Statuses: ``pending`` (to send), ``sending``, ``sent``, ``retrying``, ``failed``, ``skipped``
(superseded, never sent), ``no_recipients`` (nowhere to send it; logged, not retried).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from monitor.alerts.rules import ErrorWindowCounts, PriorAlert
from monitor.store.models import LAST_ERROR_CHARS, AlertLedger, ApiCall

PENDING: Final = "pending"
SENDING: Final = "sending"
SENT: Final = "sent"
RETRYING: Final = "retrying"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"
NO_RECIPIENTS: Final = "no_recipients"
ALERT_STATUSES: Final = (PENDING, SENDING, SENT, RETRYING, FAILED, SKIPPED, NO_RECIPIENTS)

DEFAULT_LEASE: Final = timedelta(minutes=5)
DEFAULT_RETRY_BASE: Final = timedelta(minutes=1)
DEFAULT_RETRY_MAX: Final = timedelta(minutes=60)
DEFAULT_MAX_ATTEMPTS: Final = 8

_table = AlertLedger.__table__


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff 1, 2, 4… minutes (capped), ``failed`` after ``max_attempts``; stale-claim lease."""

    base: timedelta = DEFAULT_RETRY_BASE
    cap: timedelta = DEFAULT_RETRY_MAX
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    lease: timedelta = DEFAULT_LEASE

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base <= timedelta(0) or self.cap < self.base or self.lease <= timedelta(0):
            raise ValueError("retry base, cap and lease must be positive, with cap >= base")

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed attempt (1 → base, 2 → 2×base…)."""
        grown: timedelta = self.base * (2 ** max(attempts - 1, 0))
        return min(grown, self.cap)


@dataclass(frozen=True, slots=True)
class NewAlert:
    """A ledger row to insert."""

    key_id: str
    day: date
    rule: str
    threshold: int
    status: str
    recipients: tuple[str, ...]
    subject: str
    body_text: str
    body_html: str
    detail: str | None = None
    forecast_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AlertRow:
    """A ledger row as read back (for sending, and for the dashboard)."""

    id: int
    key_id: str
    day: date
    rule: str
    threshold: int
    status: str
    detail: str | None
    recipients: tuple[str, ...]
    subject: str
    body_text: str
    body_html: str
    created_at: datetime
    updated_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None
    forecast_at: datetime | None


def _row(row: Any) -> AlertRow:
    return AlertRow(
        id=row.id,
        key_id=row.key_id,
        day=row.day,
        rule=row.rule,
        threshold=row.threshold,
        status=row.status,
        detail=row.detail,
        recipients=tuple(row.recipients or ()),
        subject=row.subject,
        body_text=row.body_text,
        body_html=row.body_html,
        created_at=row.created_at,
        updated_at=row.updated_at,
        claimed_by=row.claimed_by,
        claimed_at=row.claimed_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        sent_at=row.sent_at,
        forecast_at=row.forecast_at,
    )


def prior_alerts(conn: Connection, days: Iterable[date]) -> dict[str, list[PriorAlert]]:
    """Every ledger row on ``days``, by key, in the form the rules read."""
    wanted = sorted(set(days))
    rows = conn.execute(
        select(
            AlertLedger.key_id,
            AlertLedger.rule,
            AlertLedger.threshold,
            AlertLedger.day,
            AlertLedger.forecast_at,
        ).where(AlertLedger.day.in_(wanted))
    )
    held: dict[str, list[PriorAlert]] = {}
    for key_id, rule, threshold, day, forecast_at in rows:
        held.setdefault(key_id, []).append(PriorAlert(rule, threshold, day, forecast_at))
    return held


def insert_alert(conn: Connection, alert: NewAlert, *, worker: str, now: datetime) -> int | None:
    """Insert ``alert``; its id, or ``None`` when that row already exists (another process won)."""
    values = {
        "key_id": alert.key_id,
        "day": alert.day,
        "rule": alert.rule,
        "threshold": alert.threshold,
        "status": alert.status,
        "detail": alert.detail,
        "forecast_at": alert.forecast_at,
        "recipients": list(alert.recipients),
        "subject": alert.subject,
        "body_text": alert.body_text,
        "body_html": alert.body_html,
        "created_at": now,
        "updated_at": now,
        "claimed_by": worker,
        "claimed_at": now,
        "attempts": 0,
        "next_attempt_at": now if alert.status == PENDING else None,
    }
    dialect = conn.dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(AlertLedger)
    elif dialect == "sqlite":
        statement = sqlite.insert(AlertLedger)
    else:
        raise NotImplementedError(f"no alert ledger insert for the {dialect} dialect")
    statement = (
        statement.values(values)
        .on_conflict_do_nothing(index_elements=["key_id", "day", "rule", "threshold"])
        .returning(_table.c.id)
    )
    inserted: int | None = conn.execute(statement).scalar_one_or_none()
    return inserted


def due_alerts(
    conn: Connection, now: datetime, lease: timedelta = DEFAULT_LEASE, limit: int = 100
) -> list[AlertRow]:
    """Rows to (re)send now: pending, retry-due, or ``sending`` for longer than ``lease``."""
    due = or_(
        AlertLedger.status == PENDING,
        and_(AlertLedger.status == RETRYING, AlertLedger.next_attempt_at <= now),
        and_(AlertLedger.status == SENDING, AlertLedger.claimed_at < now - lease),
    )
    rows = conn.execute(select(_table).where(due).order_by(AlertLedger.id).limit(limit))
    return [_row(row) for row in rows]


def claim(conn: Connection, row: AlertRow, *, worker: str, now: datetime) -> bool:
    """Take ``row`` for sending; true for exactly one of the processes that try at once.

    Compare-and-set on the status and attempt count read with the row: whoever changes it first
    wins and the others' ``UPDATE`` matches nothing. Commit before sending.
    """
    result = conn.execute(
        update(AlertLedger)
        .where(
            AlertLedger.id == row.id,
            AlertLedger.status == row.status,
            AlertLedger.attempts == row.attempts,
        )
        .values(
            status=SENDING,
            claimed_by=worker,
            claimed_at=now,
            attempts=AlertLedger.attempts + 1,
            updated_at=now,
        )
    )
    return result.rowcount == 1


def mark_sent(conn: Connection, alert_id: int, *, worker: str, now: datetime) -> bool:
    """Record that the SMTP server accepted the e-mail of a row this worker claimed."""
    result = conn.execute(
        update(AlertLedger)
        .where(AlertLedger.id == alert_id, AlertLedger.claimed_by == worker)
        .values(status=SENT, sent_at=now, updated_at=now, next_attempt_at=None, last_error=None)
    )
    return result.rowcount == 1


def mark_failed(
    conn: Connection,
    alert_id: int,
    error: str,
    *,
    worker: str,
    now: datetime,
    policy: RetryPolicy = RetryPolicy(),
    final: bool = False,
) -> str:
    """Record a failed attempt: ``retrying`` with backoff, or ``failed`` after the last one (or
    at once when ``final``: a failure no retry will change)."""
    attempts = conn.execute(
        select(AlertLedger.attempts).where(AlertLedger.id == alert_id)
    ).scalar_one()
    final = final or attempts >= policy.max_attempts
    status = FAILED if final else RETRYING
    conn.execute(
        update(AlertLedger)
        .where(AlertLedger.id == alert_id, AlertLedger.claimed_by == worker)
        .values(
            status=status,
            last_error=error[:LAST_ERROR_CHARS],
            next_attempt_at=None if final else now + policy.delay(attempts),
            updated_at=now,
        )
    )
    return status


def recent_alerts(conn: Connection, limit: int = 50) -> list[AlertRow]:
    """The latest ledger rows, newest first (for the dashboard)."""
    rows = conn.execute(
        select(_table).order_by(AlertLedger.created_at.desc(), AlertLedger.id.desc()).limit(limit)
    )
    return [_row(row) for row in rows]


def alert_status_counts(conn: Connection) -> dict[str, int]:
    """How many ledger rows are in each status."""
    rows = conn.execute(select(AlertLedger.status, func.count()).group_by(AlertLedger.status))
    return {status: int(count) for status, count in rows}


def error_window_counts(
    conn: Connection, start: datetime, end: datetime
) -> list[tuple[ErrorWindowCounts, str | None]]:
    """Per key, its calls in ``[start, end)`` from ``api_calls``, with a key hint.

    ``throttled_or_5xx``: status 429 or 500–599; ``unauthorized``: status 401; ``quota_refused``:
    error class ``quota_exhausted`` (402, 403 ``insufficient_quota``). Read from the raw
    calls, not the hourly rollup, because the window (15 minutes) is finer than an hour.
    """
    status = ApiCall.status_code
    bad = case((or_(status == 429, and_(status >= 500, status < 600)), 1), else_=0)
    denied = case((status == 401, 1), else_=0)
    refused = case((ApiCall.error_type == "quota_exhausted", 1), else_=0)
    rows = conn.execute(
        select(
            ApiCall.key_id,
            func.count(),
            func.coalesce(func.sum(bad), 0),
            func.coalesce(func.sum(denied), 0),
            func.coalesce(func.sum(refused), 0),
            func.max(ApiCall.key_hint),
        )
        .where(ApiCall.key_id.is_not(None), ApiCall.started_at >= start, ApiCall.started_at < end)
        .group_by(ApiCall.key_id)
    )
    return [
        (ErrorWindowCounts(key_id, start, end, int(calls), int(b), int(d), int(q)), hint)
        for key_id, calls, b, d, q, hint in rows
    ]


def ledger_rows(conn: Connection, key_id: str | None = None) -> Sequence[AlertRow]:
    """Every ledger row (of one key if given), oldest first: for tests and the CLI."""
    query = select(_table).order_by(AlertLedger.id)
    if key_id is not None:
        query = query.where(AlertLedger.key_id == key_id)
    return [_row(row) for row in conn.execute(query)]
