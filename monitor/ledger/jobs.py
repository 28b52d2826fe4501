"""One pass of every scheduled job: rollup → storage upkeep → alert rules → ledger claims → sending.

:func:`run_tick` is what both ``longcat-monitor tick`` (cron, tests) and the scheduler run. It is
safe to run in several processes at once: the rollup is idempotent, and the alert ledger's unique
rows and compare-and-set claims let exactly one process send each e-mail.

>>> result = run_tick(make_engine(settings.database_url), settings)  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
rollup 120 calls/2 key-days; alerts 1 new (2 skipped, 0 no recipients); e-mails 1 sent, 0 failed
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine

from monitor.alerts.delivery import DeliveryError, Email, Sender, SmtpSender
from monitor.alerts.forecast import Forecast, forecast_exhaustion, recent_window_start
from monitor.alerts.messages import SUBJECT_PREFIX, AlertFacts, render
from monitor.alerts.rules import (
    DIGEST_DELAY,
    Decision,
    ErrorPolicy,
    ErrorWindowCounts,
    KeyState,
    digest_due,
    error_alerts,
    forecast_alert,
    quota_alerts,
    window_start,
)
from monitor.config import Settings
from monitor.ledger.quota_day import day_end, day_start, quota_day
from monitor.ledger.retention import StorageResult, maintain_storage
from monitor.ledger.rollup import RollupResult, run_rollup
from monitor.ledger.spending import decide_spending
from monitor.store import alerts as ledger
from monitor.store.key_usage import KeyDayUsage, hourly_tokens, key_usage_for_day

logger = logging.getLogger("monitor.ledger.jobs")


def default_worker_id() -> str:
    """``host:pid``: who claimed a ledger row, for a person reading the ledger."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class JobPolicy:
    """The tunables of one pass; defaults are the named constants of each module."""

    retry: ledger.RetryPolicy = field(default_factory=ledger.RetryPolicy)
    errors: ErrorPolicy = field(default_factory=ErrorPolicy)
    digest: bool = True
    digest_delay: timedelta = DIGEST_DELAY


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one :func:`run_tick` pass did."""

    now: datetime
    rollup: RollupResult
    decided: int = 0
    skipped: int = 0
    no_recipients: int = 0
    sent: int = 0
    failed_attempts: int = 0
    gave_up: int = 0
    storage: StorageResult = field(default_factory=StorageResult)

    def summary(self) -> str:
        """One line, for ``longcat-monitor tick`` and the scheduler's log."""
        storage = self.storage.summary()
        return (
            f"rollup {self.rollup.scanned} calls/{self.rollup.days} key-days; "
            f"alerts {self.decided} new ({self.skipped} skipped, "
            f"{self.no_recipients} no recipients); "
            f"e-mails {self.sent} sent, {self.failed_attempts} failed"
            + (f", {self.gave_up} given up" if self.gave_up else "")
            + (f"; storage: {storage}" if storage else "")
        )


@dataclass
class _Counts:
    decided: int = 0
    skipped: int = 0
    no_recipients: int = 0
    sent: int = 0
    failed_attempts: int = 0
    gave_up: int = 0


def run_tick(
    engine: Engine,
    settings: Settings,
    now: datetime | None = None,
    smtp: Sender | None = None,
    *,
    policy: JobPolicy = JobPolicy(),
    worker: str | None = None,
) -> TickResult:
    """Roll up, decide the alerts due, record them in the ledger and send what is due.

    ``smtp`` sends one :class:`~monitor.alerts.delivery.Email`; by default over SMTP with the
    settings' ``MONITOR_SMTP_*`` values, read at send time. ``now`` is injectable for tests.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    worker = worker or default_worker_id()
    send = smtp or SmtpSender(lambda: settings)
    rolled = run_rollup(engine, settings, now)
    storage = maintain_storage(engine, settings, now)
    counts = _Counts()
    with engine.connect() as conn:
        new_alerts = _decide(conn, settings, now, policy)
    for alert in new_alerts:
        with engine.begin() as conn:
            inserted = ledger.insert_alert(conn, alert, worker=worker, now=now)
        if inserted is None:
            continue
        counts.decided += 1
        if alert.status == ledger.SKIPPED:
            counts.skipped += 1
        elif alert.status == ledger.NO_RECIPIENTS:
            counts.no_recipients += 1
            logger.warning(
                "alert %r for key %s has no recipients (set the key's --email or "
                "MONITOR_ALERT_TO); recorded, not sent",
                alert.subject,
                alert.key_id,
            )
    _deliver(engine, send, now, worker, policy.retry, counts)
    return TickResult(now=now, rollup=rolled, storage=storage, **vars(counts))


# --- deciding -----------------------------------------------------------------------------


def _decide(
    conn: Connection, settings: Settings, now: datetime, policy: JobPolicy
) -> list[ledger.NewAlert]:
    tz = settings.tz
    today = quota_day(now, tz)
    yesterday = today - timedelta(days=1)
    start, reset = day_start(today, tz), day_end(today, tz)
    held = ledger.prior_alerts(conn, (today, yesterday))
    usages = {
        u.key_id: u for u in key_usage_for_day(conn, today, default_quota=settings.default_quota)
    }
    out: list[ledger.NewAlert] = []

    for usage in usages.values():
        if usage.requests <= 0 and usage.total_tokens <= 0:
            continue
        prior = held.get(usage.key_id, [])
        state = _state(usage)
        facts = _Facts(settings, usage, now, reset)
        for decision in quota_alerts(state, settings.alert_thresholds, prior):
            out.append(facts.alert(decision))
        rate = forecast_exhaustion(
            usage.total_tokens,
            usage.quota,
            hourly_tokens(conn, usage.key_id, recent_window_start(now, start)),
            now,
            start,
        )
        if rate is not None:
            ahead = forecast_alert(state, rate.exhaust_at, reset, prior)
            if ahead is not None:
                out.append(facts.alert(ahead, rate))

    window = window_start(now, start, policy.errors.window)
    for counts, hint in ledger.error_window_counts(conn, window, now):
        for decision in error_alerts(
            counts, today, start, held.get(counts.key_id, []), policy.errors
        ):
            usage = usages.get(counts.key_id) or _unseen(counts.key_id, hint, today, settings)
            out.append(_Facts(settings, usage, now, reset).alert(decision, window=counts))

    out.extend(decide_spending(conn, settings, now))

    if policy.digest:
        for usage in key_usage_for_day(conn, yesterday, default_quota=settings.default_quota):
            digest = digest_due(
                yesterday,
                start,
                now,
                usage.requests,
                bool(recipients_for(usage, settings)),
                held.get(usage.key_id, []),
                policy.digest_delay,
            )
            if digest is not None:
                out.append(_Facts(settings, usage, now, start).alert(digest))
    return out


def _minutes(span: timedelta) -> int:
    """Whole minutes, rounded up, at least 1 (a window checked while it runs is partial)."""
    return max(-(-int(span.total_seconds()) // 60), 1)


def recipients_for(usage: KeyDayUsage, settings: Settings) -> tuple[str, ...]:
    """The key's own recipients, else ``MONITOR_ALERT_TO``."""
    return tuple(usage.recipients) or tuple(settings.alert_to)


def _state(usage: KeyDayUsage) -> KeyState:
    return KeyState(
        usage.key_id, usage.day, usage.quota, usage.total_tokens, usage.name, usage.hint or ""
    )


def _unseen(key_id: str, hint: str | None, day: date, settings: Settings) -> KeyDayUsage:
    """A key with calls in the error window but no rollup row yet (e.g. only 401s so far)."""
    return KeyDayUsage(key_id, None, hint, day, settings.default_quota, 0, 0, 0, 0, 0, {}, ())


@dataclass(frozen=True, slots=True)
class _Facts:
    settings: Settings
    usage: KeyDayUsage
    now: datetime
    reset: datetime

    def alert(
        self,
        decision: Decision,
        rate: Forecast | None = None,
        window: ErrorWindowCounts | None = None,
    ) -> ledger.NewAlert:
        u = self.usage
        facts = AlertFacts(
            rule=decision.rule,
            threshold=decision.threshold,
            day=decision.day,
            key_hint=u.hint or "????",
            key_name=u.name,
            used=u.total_tokens,
            quota=u.quota,
            now=self.now,
            reset_at=self.reset,
            tz=self.settings.tz,
            forecast_at=decision.forecast_at,
            tokens_per_hour=rate.tokens_per_hour if rate else None,
            requests=u.requests,
            errors=u.errors,
            window_start=window.start if window else None,
            window_minutes=_minutes(window.end - window.start) if window else 0,
            window_calls=window.calls if window else 0,
            window_errors=window.throttled_or_5xx if window else 0,
            window_unauthorized=window.unauthorized if window else 0,
            window_quota_refused=window.quota_refused if window else 0,
            dashboard_url=self.settings.dashboard_url,
        )
        recipients = recipients_for(u, self.settings)
        try:
            mail = render(facts)
        except Exception as exc:  # one alert that cannot be built stops no other
            logger.warning("alert %s for key %s cannot be built: %r", decision.rule, u.key_id, exc)
            return ledger.NewAlert(
                key_id=u.key_id,
                day=decision.day,
                rule=decision.rule,
                threshold=decision.threshold,
                status=ledger.FAILED,
                recipients=recipients,
                subject=f"{SUBJECT_PREFIX} {decision.rule} alert for key {u.key_id}",
                body_text="",
                body_html="",
                detail=f"cannot build the e-mail: {type(exc).__name__}: {exc}"[:500],
                forecast_at=decision.forecast_at,
            )
        if not decision.send:
            status = ledger.SKIPPED
        elif not recipients:
            status = ledger.NO_RECIPIENTS
        else:
            status = ledger.PENDING
        return ledger.NewAlert(
            key_id=u.key_id,
            day=decision.day,
            rule=decision.rule,
            threshold=decision.threshold,
            status=status,
            recipients=recipients,
            subject=mail.subject,
            body_text=mail.text,
            body_html=mail.html,
            detail=decision.reason or None,
            forecast_at=decision.forecast_at,
        )


# --- sending ------------------------------------------------------------------------------


def _deliver(
    engine: Engine,
    send: Sender,
    now: datetime,
    worker: str,
    retry: ledger.RetryPolicy,
    counts: _Counts,
) -> None:
    with engine.connect() as conn:
        due = ledger.due_alerts(conn, now, retry.lease)
    for row in due:
        with engine.begin() as conn:
            if not ledger.claim(conn, row, worker=worker, now=now):
                continue  # another process took it
        if row.attempts >= retry.max_attempts:
            # Claimed and abandoned (a crash mid-send) as many times as attempts are allowed.
            with engine.begin() as conn:
                ledger.mark_failed(
                    conn, row.id, "abandoned mid-send", worker=worker, now=now, policy=retry
                )
            counts.gave_up += 1
            continue
        email = Email(row.recipients, row.subject, row.body_text, row.body_html)
        try:
            send(email)
        except Exception as exc:  # one alert that cannot be sent stops no other
            _failed(engine, row, exc, worker=worker, now=now, retry=retry, counts=counts)
            continue
        with engine.begin() as conn:
            ledger.mark_sent(conn, row.id, worker=worker, now=now)
        counts.sent += 1


def _failed(
    engine: Engine,
    row: ledger.AlertRow,
    exc: Exception,
    *,
    worker: str,
    now: datetime,
    retry: ledger.RetryPolicy,
    counts: _Counts,
) -> None:
    """Note a failed send. The SMTP server's answer (:class:`DeliveryError`) is retried with
    back-off; anything else (an e-mail that cannot be built) would fail the same way again, so
    the alert is failed at once, with its reason."""
    final = not isinstance(exc, DeliveryError)
    reason = f"{type(exc).__name__}: {exc}" if final else str(exc)
    counts.failed_attempts += 1
    with engine.begin() as conn:
        status = ledger.mark_failed(
            conn, row.id, reason, worker=worker, now=now, policy=retry, final=final
        )
    if status == ledger.FAILED:
        counts.gave_up += 1
    logger.warning(
        "alert %d (%s) not sent, attempt %d: %s; now %s",
        row.id,
        row.subject,
        row.attempts + 1,
        reason,
        status,
    )
