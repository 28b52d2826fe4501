"""One pass of every scheduled job: rollup → storage upkeep → alert rules → routes and silences →
ledger claims → sending to each channel.

:func:`run_tick` is what both ``longcat-monitor tick`` (cron, tests) and the scheduler run. It is
safe to run in several processes at once: the rollup is idempotent, and the alert ledger's unique
rows and compare-and-set claims let exactly one process send each alert to each channel.

>>> result = run_tick(make_engine(settings.database_url), settings)  # doctest: +SKIP
>>> print(result.summary())  # doctest: +SKIP
rollup 120 calls/2 key-days; alerts 1 new (2 skipped, 0 silenced, 0 no recipients); messages 2…
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Connection, Engine

from monitor.alerts.channels import EMAIL, Channel
from monitor.alerts.delivery import DeliveryError, Email, Sender
from monitor.alerts.document import build_document, document_from_email
from monitor.alerts.forecast import Forecast, forecast_exhaustion, recent_window_start
from monitor.alerts.messages import SUBJECT_PREFIX, AlertFacts, local_hhmm, render
from monitor.alerts.notify import ChannelBook, ChannelSend, ChannelSender, Outgoing, load_channels
from monitor.alerts.routing import base_rule, severity_of
from monitor.alerts.rules import (
    DIGEST_DELAY,
    LATENCY_WINDOW,
    RULE_AUTH_BURST,
    RULE_DIGEST,
    RULE_ERROR_RATE,
    RULE_LATENCY,
    RULE_QUOTA_REFUSED,
    RULE_TTFT,
    Decision,
    ErrorPolicy,
    ErrorWindowCounts,
    KeyState,
    LatencyWindow,
    PriorAlert,
    Silence,
    digest_due,
    error_alerts,
    forecast_alert,
    latency_alert,
    quota_alerts,
    silenced_by,
    window_start,
)
from monitor.config import Settings
from monitor.ledger.quota_day import day_end, day_start, quota_day
from monitor.ledger.retention import StorageResult, maintain_storage
from monitor.ledger.rollup import RollupResult, run_rollup
from monitor.ledger.spending import decide_spending
from monitor.store import alerts as ledger
from monitor.store.key_usage import KeyDayUsage, hourly_tokens, key_usage_for_day
from monitor.store.silences import key_channel_urls, silences

#: The ledger ``key_id`` of a per-model alert (the latency rules).
MODEL_PREFIX = "model:"

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
    silenced: int = 0
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
            f"alerts {self.decided} new ({self.skipped} skipped, {self.silenced} silenced, "
            f"{self.no_recipients} no recipients); "
            f"messages {self.sent} sent, {self.failed_attempts} failed"
            + (f", {self.gave_up} given up" if self.gave_up else "")
            + (f"; storage: {storage}" if storage else "")
        )


@dataclass
class _Counts:
    decided: int = 0
    skipped: int = 0
    silenced: int = 0
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
    send: ChannelSend | None = None,
) -> TickResult:
    """Roll up, decide the alerts due, record them in the ledger and send what is due.

    ``send`` sends one alert to one channel (by default :class:`ChannelSender`: Apprise, the
    signed webhook, and e-mail through ``smtp``, by default over SMTP with the settings'
    ``MONITOR_SMTP_*`` values read at send time). ``now`` is injectable for tests.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    worker = worker or default_worker_id()
    sender = send or ChannelSender(lambda: settings, smtp)
    rolled = run_rollup(engine, settings, now)
    storage = maintain_storage(engine, settings, now)
    counts = _Counts()
    with engine.connect() as conn:
        book = load_channels(settings, key_channel_urls(conn))
        for problem in book.problems:
            logger.error("alert channels: %s", problem)
        context = _Context(settings, now, book, silences(conn, now))
        new_alerts = _decide(conn, context, policy)
    for alert in new_alerts:
        with engine.begin() as conn:
            inserted = ledger.insert_alert(conn, alert, worker=worker, now=now)
        if inserted is None:
            continue
        counts.decided += 1
        if alert.status == ledger.SKIPPED:
            counts.skipped += 1
        elif alert.status == ledger.SILENCED:
            counts.silenced += 1
        elif alert.status == ledger.NO_RECIPIENTS:
            counts.no_recipients += 1
            logger.warning(
                "alert %r for key %s has nowhere to go (no channel routed, and no e-mail "
                "recipient: the key's --email or MONITOR_ALERT_TO); recorded, not sent",
                alert.subject,
                alert.key_id,
            )
    _deliver(engine, sender, book, now, worker, policy.retry, counts)
    return TickResult(now=now, rollup=rolled, storage=storage, **vars(counts))


# --- deciding -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    """What every alert decided in one pass is routed and silenced by."""

    settings: Settings
    now: datetime
    book: ChannelBook
    silences: list[Silence]

    @property
    def repeat(self) -> timedelta:
        return timedelta(minutes=self.settings.alert_repeat_min)


def _decide(conn: Connection, ctx: _Context, policy: JobPolicy) -> list[ledger.NewAlert]:
    settings, now = ctx.settings, ctx.now
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
        facts = _Facts(ctx, usage, reset)
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

    out += _error_incidents(conn, ctx, policy.errors, today, start, reset, usages, held)
    out += _latency_incidents(conn, ctx, today, start, reset, held)

    out.extend(_routed(ctx, alert) for alert in decide_spending(conn, settings, now))

    if policy.digest:
        for usage in key_usage_for_day(conn, yesterday, default_quota=settings.default_quota):
            facts = _Facts(ctx, usage, start)
            digest = digest_due(
                yesterday,
                start,
                now,
                usage.requests,
                _has_channels(ctx, usage, RULE_DIGEST),
                held.get(usage.key_id, []),
                policy.digest_delay,
            )
            if digest is not None:
                out.append(facts.alert(digest))
    return out


def _error_incidents(
    conn: Connection,
    ctx: _Context,
    errors: ErrorPolicy,
    today: date,
    start: datetime,
    reset: datetime,
    usages: dict[str, KeyDayUsage],
    held: dict[str, list[PriorAlert]],
) -> list[ledger.NewAlert]:
    """The error-rate and 401 incidents: the window in progress, and the whole one before it
    (which says whether an open incident has recovered)."""
    window = window_start(ctx.now, start, errors.window)
    before = window - errors.window
    current = {c.key_id: (c, hint) for c, hint in ledger.error_window_counts(conn, window, ctx.now)}
    previous = (
        {c.key_id: (c, hint) for c, hint in ledger.error_window_counts(conn, before, window)}
        if before >= start
        else {}
    )
    incident_rules = (RULE_ERROR_RATE, RULE_AUTH_BURST, RULE_QUOTA_REFUSED)
    open_keys = {
        key_id for key_id, rows in held.items() if any(p.rule in incident_rules for p in rows)
    }
    out = []
    for key_id in sorted(set(current) | set(previous) | open_keys):
        counts, hint = current.get(key_id) or (_no_calls(key_id, window, ctx.now), None)
        earlier: ErrorWindowCounts | None = None
        if before >= start:
            earlier, earlier_hint = previous.get(key_id) or (
                _no_calls(key_id, before, window),
                None,
            )
            hint = hint or earlier_hint
        decisions = error_alerts(
            counts, today, start, held.get(key_id, []), errors, previous=earlier,
            repeat=ctx.repeat,
        )  # fmt: skip
        for decision in decisions:
            usage = usages.get(key_id) or _unseen(key_id, hint, today, ctx.settings)
            shown = earlier if decision.rule.endswith("_recovered") and earlier else counts
            limit = {
                RULE_ERROR_RATE: f"{errors.share:.0%} of at least {errors.min_calls} calls",
                RULE_AUTH_BURST: f"{errors.min_unauthorized} or more 401s",
                RULE_QUOTA_REFUSED: f"{errors.min_quota_refused} or more refusals",
            }.get(base_rule(decision.rule), "")
            out.append(_Facts(ctx, usage, reset).alert(decision, window=shown, limit=limit))
    return out


def _no_calls(key_id: str, start: datetime, end: datetime) -> ErrorWindowCounts:
    return ErrorWindowCounts(key_id, start, end, 0, 0, 0)


def _latency_incidents(
    conn: Connection,
    ctx: _Context,
    today: date,
    start: datetime,
    reset: datetime,
    held: dict[str, list[PriorAlert]],
) -> list[ledger.NewAlert]:
    """The p95 latency and time-to-first-token incidents, per model, over the last whole window."""
    end = window_start(ctx.now, start, LATENCY_WINDOW)
    begin = end - LATENCY_WINDOW
    if begin < start:
        return []
    out = []
    for rule, limit, ttft in (
        (RULE_LATENCY, ctx.settings.latency_p95_ms, False),
        (RULE_TTFT, ctx.settings.ttft_p95_ms, True),
    ):
        if limit is None:
            continue
        windows = {
            w.model: w for w in ledger.latency_windows(conn, begin, end, ttft=ttft, limit_ms=limit)
        }
        open_models = {
            key_id.removeprefix(MODEL_PREFIX)
            for key_id, rows in held.items()
            if key_id.startswith(MODEL_PREFIX) and any(p.rule == rule for p in rows)
        }
        for model in sorted(set(windows) | open_models):
            w = windows.get(model) or LatencyWindow(model, begin, end, 0, 0, limit)
            key_id = MODEL_PREFIX + model
            decision = latency_alert(rule, w, today, start, held.get(key_id, []), ctx.repeat)
            if decision is None:
                continue
            usage = KeyDayUsage(key_id, None, None, today, 0, 0, 0, 0, 0, 0, {}, ())
            facts = _Facts(ctx, usage, reset)
            out.append(facts.alert(decision, latency=w, limit=f"{limit:,.0f} ms"))
    return out


def _has_channels(ctx: _Context, usage: KeyDayUsage, rule: str) -> bool:
    """Whether an alert of ``rule`` for this key would go anywhere."""
    mail = bool(recipients_for(usage, ctx.settings))
    routed = ctx.book.route(rule, severity_of(rule), usage.key_id)
    return any(c.name != EMAIL or mail for c in routed)


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
    ctx: _Context
    usage: KeyDayUsage
    reset: datetime

    def alert(
        self,
        decision: Decision,
        rate: Forecast | None = None,
        window: ErrorWindowCounts | None = None,
        *,
        latency: LatencyWindow | None = None,
        limit: str = "",
    ) -> ledger.NewAlert:
        u, settings, now = self.usage, self.ctx.settings, self.ctx.now
        span = window or latency
        model = latency.model if latency else None
        facts = AlertFacts(
            rule=decision.rule,
            threshold=decision.threshold,
            day=decision.day,
            key_hint=u.hint or "????",
            key_name=u.name,
            used=u.total_tokens,
            quota=u.quota,
            now=now,
            reset_at=self.reset,
            tz=settings.tz,
            forecast_at=decision.forecast_at,
            tokens_per_hour=rate.tokens_per_hour if rate else None,
            requests=u.requests,
            errors=u.errors,
            window_start=span.start if span else None,
            window_minutes=_minutes(span.end - span.start) if span else 0,
            window_calls=span.calls if span else 0,
            window_errors=window.throttled_or_5xx if window else 0,
            window_unauthorized=window.unauthorized if window else 0,
            window_quota_refused=window.quota_refused if window else 0,
            dashboard_url=settings.dashboard_url,
            reason=decision.reason,
            limit=limit,
            model=model,
            p95_ms=latency.p95_ms if latency else None,
        )
        recipients = recipients_for(u, settings)
        try:
            mail = render(facts)
            severity = severity_of(decision.rule, decision.threshold)
            document = build_document(facts, key_id=u.key_id, severity=severity)
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
        alert = ledger.NewAlert(
            key_id=u.key_id,
            day=decision.day,
            rule=decision.rule,
            threshold=decision.threshold,
            status=ledger.PENDING if decision.send else ledger.SKIPPED,
            recipients=recipients,
            subject=mail.subject,
            body_text=mail.text,
            body_html=mail.html,
            detail=decision.reason or None,
            forecast_at=decision.forecast_at,
            severity=severity,
            document=document,
        )
        return _routed(self.ctx, alert)


def _routed(ctx: _Context, alert: ledger.NewAlert) -> ledger.NewAlert:
    """``alert`` with the channels its route gives it (e-mail only when it has recipients), or
    recorded as silenced, or as having nowhere to go. An alert decided elsewhere (pools, money)
    gets its severity here and a document made from its e-mail."""
    if alert.status not in (ledger.PENDING, ledger.NO_RECIPIENTS):
        return alert  # skipped, or failed to build: recorded as it is
    severity = alert.severity or severity_of(alert.rule, alert.threshold)
    document = alert.document or document_from_email(
        alert.rule,
        severity,
        alert.threshold,
        alert.key_id,
        alert.day,
        alert.subject.removeprefix(SUBJECT_PREFIX).strip(),
        alert.body_text,
        ctx.settings.dashboard_url,
    )
    targets = tuple(
        (c.name, c.target)
        for c in ctx.book.route(alert.rule, severity, alert.key_id)
        if c.name != EMAIL or alert.recipients
    )
    silence = silenced_by(ctx.silences, alert.rule, alert.key_id, ctx.now)
    status, detail = ledger.PENDING, alert.detail
    if silence is not None:
        ends = silence.ends_at
        status = ledger.SILENCED
        detail = (
            f"silenced by #{silence.id} until {local_hhmm(ends, ctx.settings.tz)} {ends:%Y-%m-%d}"
        )
    elif not targets:
        status = ledger.NO_RECIPIENTS
    return replace(
        alert, status=status, detail=detail, severity=severity, document=document, channels=targets
    )


# --- sending ------------------------------------------------------------------------------


def _deliver(
    engine: Engine,
    send: ChannelSend,
    book: ChannelBook,
    now: datetime,
    worker: str,
    retry: ledger.RetryPolicy,
    counts: _Counts,
) -> None:
    with engine.connect() as conn:
        due = ledger.due_deliveries(conn, now, retry.lease)
    for delivery, alert in due:
        with engine.begin() as conn:
            if not ledger.claim(conn, delivery, worker=worker, now=now):
                continue  # another process took it
        channel = book.for_key(alert.key_id).get(delivery.channel)
        problem = None
        if delivery.attempts >= retry.max_attempts:
            # Claimed and abandoned (a crash mid-send) as many times as attempts are allowed.
            problem = "abandoned mid-send"
        elif channel is None:
            problem = f"channel {delivery.channel!r} is no longer configured"
        if problem is not None:
            with engine.begin() as conn:
                ledger.mark_failed(
                    conn, delivery.id, problem, worker=worker, now=now, policy=retry, final=True
                )
            counts.gave_up += 1
            continue
        assert channel is not None
        outgoing = Outgoing(
            f"{alert.id}/{delivery.channel}",
            Email(alert.recipients, alert.subject, alert.body_text, alert.body_html),
            alert.document or {},
        )
        try:
            send(channel, outgoing)
        except Exception as exc:  # one alert that cannot be sent stops no other
            _failed(engine, alert, delivery, channel, exc, worker=worker, now=now, retry=retry,
                    counts=counts)  # fmt: skip
            continue
        with engine.begin() as conn:
            ledger.mark_sent(conn, delivery.id, worker=worker, now=now)
        counts.sent += 1


def _failed(
    engine: Engine,
    alert: ledger.AlertRow,
    delivery: ledger.DeliveryRow,
    channel: Channel,
    exc: Exception,
    *,
    worker: str,
    now: datetime,
    retry: ledger.RetryPolicy,
    counts: _Counts,
) -> None:
    """Note a failed send. The channel's answer (:class:`DeliveryError`) is retried with
    back-off; anything else (a message that cannot be built) would fail the same way again, so
    the delivery is failed at once, with its reason (the channel's URL masked in it)."""
    final = not isinstance(exc, DeliveryError)
    reason = f"{type(exc).__name__}: {exc}" if final else str(exc)
    if channel.url:
        reason = reason.replace(channel.url, channel.target)
    counts.failed_attempts += 1
    with engine.begin() as conn:
        status = ledger.mark_failed(
            conn, delivery.id, reason, worker=worker, now=now, policy=retry, final=final
        )
    if status == ledger.FAILED:
        counts.gave_up += 1
    logger.warning(
        "alert %d (%s) not sent to %s, attempt %d: %s; now %s",
        alert.id,
        alert.subject,
        delivery.channel,
        delivery.attempts + 1,
        reason,
        status,
    )
