"""The alert ledger: what was decided (``alert_ledger``) and each channel's delivery of it
(``alert_deliveries``): claimed, sent, retried or failed.

The ledger is what makes every channel exactly-once across processes and hosts:

1. A decided alert is *inserted* (``INSERT … ON CONFLICT DO NOTHING`` on the unique
   ``(key_id, day, rule, threshold)``); only one process's insert lands, whatever runs at once.
   The row holds the rendered e-mail and the alert's document, so every attempt sends the same.
   The same transaction inserts one delivery row per channel the alert is routed to.
2. Before sending, a process *claims* a delivery with a compare-and-set ``UPDATE`` (status and
   attempt count as read); only one claim can succeed. The delivery is then ``sending``.
3. After the channel accepts it the delivery is ``sent``; after a failure ``retrying`` with
   ``next_attempt_at`` backed off exponentially, and ``failed`` after the last attempt. Each
   channel is retried on its own: the others are never sent again. A delivery left ``sending``
   by a crashed process longer than the lease is claimed again.

Alert statuses: ``routed`` (it has deliveries), ``skipped`` (superseded, or an incident still
firing between reminders), ``silenced`` (a silence covered it: recorded, not sent),
``no_recipients`` (nowhere to send it). Delivery statuses: ``pending``, ``sending``, ``sent``,
``retrying``, ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import Connection, and_, case, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from monitor.alerts.rules import ErrorWindowCounts, LatencyWindow, PriorAlert
from monitor.store.models import LAST_ERROR_CHARS, AlertDelivery, AlertLedger, ApiCall

#: Delivery statuses (and ``pending`` is also what a :class:`NewAlert` to deliver says).
PENDING: Final = "pending"
SENDING: Final = "sending"
SENT: Final = "sent"
RETRYING: Final = "retrying"
FAILED: Final = "failed"
DELIVERY_STATUSES: Final = (PENDING, SENDING, SENT, RETRYING, FAILED)
#: Alert statuses.
ROUTED: Final = "routed"
SKIPPED: Final = "skipped"
SILENCED: Final = "silenced"
NO_RECIPIENTS: Final = "no_recipients"
ALERT_STATUSES: Final = (
    PENDING, SENDING, SENT, RETRYING, FAILED, SILENCED, SKIPPED, NO_RECIPIENTS
)  # fmt: skip

DEFAULT_LEASE: Final = timedelta(minutes=5)
DEFAULT_RETRY_BASE: Final = timedelta(minutes=1)
DEFAULT_RETRY_MAX: Final = timedelta(minutes=60)
DEFAULT_MAX_ATTEMPTS: Final = 8

_table = AlertLedger.__table__
_deliveries = AlertDelivery.__table__


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
    """A ledger row to insert. With ``status`` ``pending`` it is delivered to ``channels``
    (``(name, masked target)`` pairs; by default e-mail alone) and stored as ``routed``."""

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
    severity: str | None = None
    document: dict[str, Any] | None = None
    channels: tuple[tuple[str, str], ...] = (("email", "e-mail (SMTP)"),)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One alert's delivery to one channel, as read back."""

    id: int
    alert_id: int
    channel: str
    target: str
    status: str
    attempts: int
    created_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertRow:
    """A ledger row as read back (for sending, and for the dashboard), with its deliveries."""

    id: int
    key_id: str
    day: date
    rule: str
    threshold: int
    status: str
    severity: str | None
    detail: str | None
    recipients: tuple[str, ...]
    subject: str
    body_text: str
    body_html: str
    document: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    forecast_at: datetime | None
    deliveries: tuple[DeliveryRow, ...] = ()

    def delivery(self, channel: str) -> DeliveryRow | None:
        return next((d for d in self.deliveries if d.channel == channel), None)


def _row(row: Any, deliveries: Sequence[DeliveryRow] = ()) -> AlertRow:
    return AlertRow(
        id=row.id,
        key_id=row.key_id,
        day=row.day,
        rule=row.rule,
        threshold=row.threshold,
        status=row.status,
        severity=row.severity,
        detail=row.detail,
        recipients=tuple(row.recipients or ()),
        subject=row.subject,
        body_text=row.body_text,
        body_html=row.body_html,
        document=row.document,
        created_at=row.created_at,
        updated_at=row.updated_at,
        forecast_at=row.forecast_at,
        deliveries=tuple(deliveries),
    )


def _delivery(row: Any) -> DeliveryRow:
    return DeliveryRow(
        id=row.id,
        alert_id=row.alert_id,
        channel=row.channel,
        target=row.target,
        status=row.status,
        attempts=row.attempts,
        created_at=row.created_at,
        claimed_by=row.claimed_by,
        claimed_at=row.claimed_at,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        sent_at=row.sent_at,
    )


def _with_deliveries(conn: Connection, rows: Sequence[Any]) -> list[AlertRow]:
    ids = [row.id for row in rows]
    found: dict[int, list[DeliveryRow]] = {}
    if ids:
        query = select(_deliveries).where(AlertDelivery.alert_id.in_(ids))
        for d in conn.execute(query.order_by(AlertDelivery.id)):
            found.setdefault(d.alert_id, []).append(_delivery(d))
    return [_row(row, found.get(row.id, ())) for row in rows]


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
            AlertLedger.status,
        ).where(AlertLedger.day.in_(wanted))
    )
    held: dict[str, list[PriorAlert]] = {}
    for key_id, rule, threshold, day, forecast_at, status in rows:
        prior = PriorAlert(rule, threshold, day, forecast_at, notified=status != SKIPPED)
        held.setdefault(key_id, []).append(prior)
    return held


def insert_alert(conn: Connection, alert: NewAlert, *, worker: str, now: datetime) -> int | None:
    """Insert ``alert`` and, when it is to be delivered, one pending delivery per channel; its
    id, or ``None`` when that row already exists (another process won)."""
    deliver = alert.status == PENDING and bool(alert.channels)
    status = alert.status if alert.status != PENDING else NO_RECIPIENTS
    values = {
        "key_id": alert.key_id,
        "day": alert.day,
        "rule": alert.rule,
        "threshold": alert.threshold,
        "status": ROUTED if deliver else status,
        "severity": alert.severity,
        "detail": alert.detail,
        "forecast_at": alert.forecast_at,
        "recipients": list(alert.recipients),
        "subject": alert.subject,
        "body_text": alert.body_text,
        "body_html": alert.body_html,
        "document": alert.document,
        "created_at": now,
        "updated_at": now,
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
    if inserted is not None and deliver:
        conn.execute(
            insert(AlertDelivery),
            [
                {
                    "alert_id": inserted,
                    "channel": name,
                    "target": target,
                    "status": PENDING,
                    "created_at": now,
                    "updated_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for name, target in alert.channels
            ],
        )
    return inserted


def due_deliveries(
    conn: Connection, now: datetime, lease: timedelta = DEFAULT_LEASE, limit: int = 100
) -> list[tuple[DeliveryRow, AlertRow]]:
    """Deliveries to (re)send now, each with its alert: pending, retry-due, or ``sending`` for
    longer than ``lease``."""
    d = AlertDelivery
    due = or_(
        d.status == PENDING,
        and_(d.status == RETRYING, d.next_attempt_at <= now),
        and_(d.status == SENDING, d.claimed_at < now - lease),
    )
    rows = conn.execute(select(_deliveries).where(due).order_by(d.id).limit(limit)).all()
    alert_ids = sorted({row.alert_id for row in rows})
    alerts = {
        a.id: _row(a)
        for a in conn.execute(select(_table).where(AlertLedger.id.in_(alert_ids)))
    } if alert_ids else {}  # fmt: skip
    return [(_delivery(row), alerts[row.alert_id]) for row in rows]


def claim(conn: Connection, row: DeliveryRow, *, worker: str, now: datetime) -> bool:
    """Take delivery ``row`` for sending; true for exactly one of the processes that try at once.

    Compare-and-set on the status and attempt count read with the row: whoever changes it first
    wins and the others' ``UPDATE`` matches nothing. Commit before sending.
    """
    result = conn.execute(
        update(AlertDelivery)
        .where(
            AlertDelivery.id == row.id,
            AlertDelivery.status == row.status,
            AlertDelivery.attempts == row.attempts,
        )
        .values(
            status=SENDING,
            claimed_by=worker,
            claimed_at=now,
            attempts=AlertDelivery.attempts + 1,
            updated_at=now,
        )
    )
    return result.rowcount == 1


def mark_sent(conn: Connection, delivery_id: int, *, worker: str, now: datetime) -> bool:
    """Record that the channel accepted a delivery this worker claimed."""
    result = conn.execute(
        update(AlertDelivery)
        .where(AlertDelivery.id == delivery_id, AlertDelivery.claimed_by == worker)
        .values(status=SENT, sent_at=now, updated_at=now, next_attempt_at=None, last_error=None)
    )
    return result.rowcount == 1


def mark_failed(
    conn: Connection,
    delivery_id: int,
    error: str,
    *,
    worker: str,
    now: datetime,
    policy: RetryPolicy = RetryPolicy(),
    final: bool = False,
) -> str:
    """Record a failed attempt: ``retrying`` with backoff, or ``failed`` after the last one (or
    at once when ``final``: a failure no retry will change, a channel that no longer exists)."""
    attempts = conn.execute(
        select(AlertDelivery.attempts).where(AlertDelivery.id == delivery_id)
    ).scalar_one()
    final = final or attempts >= policy.max_attempts
    status = FAILED if final else RETRYING
    conn.execute(
        update(AlertDelivery)
        .where(AlertDelivery.id == delivery_id, AlertDelivery.claimed_by == worker)
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
    ).all()
    return _with_deliveries(conn, rows)


def alert_status_counts(conn: Connection) -> dict[str, int]:
    """How many deliveries are in each delivery status, and alerts in each other status."""
    counts = {
        status: int(count)
        for status, count in conn.execute(
            select(AlertDelivery.status, func.count()).group_by(AlertDelivery.status)
        )
    }
    alerts = conn.execute(
        select(AlertLedger.status, func.count())
        .where(AlertLedger.status != ROUTED)
        .group_by(AlertLedger.status)
    )
    counts.update((status, int(count)) for status, count in alerts)
    return counts


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
    return _with_deliveries(conn, conn.execute(query).all())


def latency_windows(
    conn: Connection, start: datetime, end: datetime, *, ttft: bool, limit_ms: float
) -> list[LatencyWindow]:
    """Per model, its successful calls in ``[start, end)``: how many, how many slower than
    ``limit_ms`` (latency, or time to first token of streams with ``ttft``), and the p95 of the
    models over the limit (read only for those, from the calls themselves)."""
    column = ApiCall.ttft_ms if ttft else ApiCall.latency_ms
    where = (
        ApiCall.started_at >= start,
        ApiCall.started_at < end,
        ApiCall.model.is_not(None),
        ApiCall.status_code == 200,
        column.is_not(None),
    )
    rows = conn.execute(
        select(ApiCall.model, func.count(), func.sum(case((column > limit_ms, 1), else_=0)))
        .where(*where)
        .group_by(ApiCall.model)
    ).all()
    windows = []
    for model, calls, over in rows:
        window = LatencyWindow(str(model), start, end, int(calls), int(over or 0), limit_ms)
        if window.firing:
            # The p95: the value with 5 % of the calls (rounded down) above it.
            p95 = conn.execute(
                select(column)
                .where(*where, ApiCall.model == model)
                .order_by(column.desc())
                .offset(int(calls) // 20)
                .limit(1)
            ).scalar_one_or_none()
            window = replace(window, p95_ms=float(p95) if p95 is not None else None)
        windows.append(window)
    return windows
