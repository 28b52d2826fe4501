"""Pure alert rules: given where a key stands and what the ledger already holds, what is due.

No I/O here. Each rule returns :class:`Decision` values; the caller writes each one to the alert
ledger, whose unique row per ``(key_id, day, rule, threshold)`` makes the decision stick even when
several processes decide the same thing at once. ``threshold`` means, per rule:

- ``quota``: the percentage crossed (50, 80, 90, 100 by default).
- ``burn_rate``: the ordinal of the burn-rate alert that day (1, then 2 if it moved much earlier…).
- ``error_rate`` / ``auth_burst`` / ``quota_refused`` / ``latency`` / ``ttft``: the minute of the
  quota day at which the window starts (``key_id`` is ``model:NAME`` for the latency rules, which
  are per model).
- ``<rule>_recovered``: the minute of the incident's last firing window.
- ``digest``: 0 (one per key per day; ``day`` is the day summarised).

The windowed rules are *incidents*: one message when one starts, a reminder at most every
``repeat`` while it keeps firing (the windows between are recorded, not sent), and a recovery
message once a whole window passes without it. An incident is followed within a quota day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

RULE_QUOTA: Final = "quota"
RULE_BURN_RATE: Final = "burn_rate"
RULE_ERROR_RATE: Final = "error_rate"
RULE_AUTH_BURST: Final = "auth_burst"
#: Calls refused because the token quota or the balance is spent (402, 403 insufficient_quota).
RULE_QUOTA_REFUSED: Final = "quota_refused"
RULE_LATENCY: Final = "latency"
RULE_TTFT: Final = "ttft"
RULE_DIGEST: Final = "digest"
RULES: Final = (
    RULE_QUOTA,
    RULE_BURN_RATE,
    RULE_ERROR_RATE,
    RULE_AUTH_BURST,
    RULE_QUOTA_REFUSED,
    RULE_LATENCY,
    RULE_TTFT,
    RULE_DIGEST,
)
RECOVERED: Final = "_recovered"
#: The rule name of a silence that covers every rule.
ALL_RULES: Final = "all"
#: A reminder of an incident still firing goes out at most this often by default.
DEFAULT_REPEAT: Final = timedelta(minutes=60)
#: The latency rules need this many calls of a model in a window to judge its p95.
LATENCY_MIN_CALLS: Final = 10
LATENCY_WINDOW: Final = timedelta(minutes=15)

#: A new forecast is e-mailed again only when it is at least this much earlier than the last one.
FORECAST_RESEND_ADVANCE: Final = timedelta(minutes=60)
ERROR_WINDOW: Final = timedelta(minutes=15)
ERROR_RATE_SHARE: Final = 0.20
ERROR_RATE_MIN_CALLS: Final = 20
AUTH_BURST_MIN_401: Final = 5
QUOTA_REFUSED_MIN_CALLS: Final = 3
#: The digest of yesterday waits this long after the reset, so late calls are rolled up first.
DIGEST_DELAY: Final = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class KeyState:
    """A key's standing on one quota day."""

    key_id: str
    day: date
    quota: int
    used: int
    name: str | None = None
    hint: str = ""

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.quota if self.quota > 0 else 0.0


@dataclass(frozen=True, slots=True)
class PriorAlert:
    """A ledger row already held for this key (any status: sent, skipped, failed…)."""

    rule: str
    threshold: int
    day: date
    forecast_at: datetime | None = None
    #: Whether a message was due (sent, or silenced); false for rows recorded as skipped.
    notified: bool = True


@dataclass(frozen=True, slots=True)
class Decision:
    """One ledger row to create: an e-mail to send, or (``send=False``) a row marked skipped."""

    rule: str
    threshold: int
    day: date
    send: bool = True
    reason: str = ""
    forecast_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ErrorWindowCounts:
    """What one key's calls did in one window (``start`` inclusive to ``end`` exclusive)."""

    key_id: str
    start: datetime
    end: datetime
    calls: int
    throttled_or_5xx: int
    unauthorized: int
    quota_refused: int = 0

    @property
    def share(self) -> float:
        return self.throttled_or_5xx / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """Error-rate thresholds; the defaults are the named constants above."""

    window: timedelta = ERROR_WINDOW
    share: float = ERROR_RATE_SHARE
    min_calls: int = ERROR_RATE_MIN_CALLS
    min_unauthorized: int = AUTH_BURST_MIN_401
    min_quota_refused: int = QUOTA_REFUSED_MIN_CALLS

    def __post_init__(self) -> None:
        if self.window <= timedelta(0) or timedelta(days=1) % self.window:
            raise ValueError(f"error window must divide a day evenly, got {self.window}")
        if not 0 < self.share <= 1:
            raise ValueError(f"error share must be in (0, 1], got {self.share}")
        if self.min_calls < 1 or self.min_unauthorized < 1 or self.min_quota_refused < 1:
            raise ValueError("minimum call counts must be at least 1")


def _held(prior: Iterable[PriorAlert], rule: str, day: date) -> list[PriorAlert]:
    return [p for p in prior if p.rule == rule and p.day == day]


def quota_alerts(
    state: KeyState, thresholds: Sequence[int], prior: Iterable[PriorAlert]
) -> list[Decision]:
    """Threshold crossings due for ``state``: one e-mail names the highest new one.

    Lower thresholds crossed at the same time are returned with ``send=False`` (superseded) so
    they are never sent later that day; a threshold already in the ledger is never returned.

    >>> s = KeyState("k", date(2025, 1, 1), quota=100, used=95)
    >>> [(d.threshold, d.send) for d in quota_alerts(s, (50, 80, 90, 100), [])]
    [(90, True), (50, False), (80, False)]
    """
    held = {p.threshold for p in _held(prior, RULE_QUOTA, state.day)}
    crossed = sorted(t for t in set(thresholds) if state.percent >= t and t not in held)
    if not crossed:
        return []
    top = crossed[-1]
    if held and max(held) > top:
        # Only possible when the thresholds were reconfigured: a higher one already went out.
        return [
            Decision(RULE_QUOTA, t, state.day, send=False, reason=f"below {max(held)}% sent")
            for t in crossed
        ]
    decisions = [Decision(RULE_QUOTA, top, state.day)]
    decisions += [
        Decision(RULE_QUOTA, t, state.day, send=False, reason=f"superseded by {top}%")
        for t in crossed[:-1]
    ]
    return decisions


def forecast_alert(
    state: KeyState,
    exhaust_at: datetime | None,
    reset_at: datetime,
    prior: Iterable[PriorAlert],
    resend_advance: timedelta = FORECAST_RESEND_ADVANCE,
) -> Decision | None:
    """The burn-rate alert due, if at the last hour's pace the key runs out before ``reset_at``.

    Once per key per day; again only when the new forecast is ``resend_advance`` or more earlier
    than the earliest one already in the ledger. Not sent once the quota is used up (the 100 %
    threshold alert says so).
    """
    if exhaust_at is None or exhaust_at >= reset_at or state.used >= state.quota:
        return None
    held = _held(prior, RULE_BURN_RATE, state.day)
    if held:
        earliest = min((p.forecast_at for p in held if p.forecast_at is not None), default=None)
        if earliest is None or exhaust_at > earliest - resend_advance:
            return None
    ordinal = max((p.threshold for p in held), default=0) + 1
    return Decision(RULE_BURN_RATE, ordinal, state.day, forecast_at=exhaust_at)


def window_start(now: datetime, day_start: datetime, window: timedelta) -> datetime:
    """The start of the fixed window (aligned to the quota day's start) that holds ``now``."""
    return day_start + ((now - day_start) // window) * window


def window_threshold(start: datetime, day_start: datetime) -> int:
    """The ledger ``threshold`` of a window: its start as minutes into the quota day."""
    return int((start - day_start).total_seconds() // 60)


def error_alerts(
    counts: ErrorWindowCounts,
    day: date,
    day_start: datetime,
    prior: Iterable[PriorAlert],
    policy: ErrorPolicy = ErrorPolicy(),
    *,
    previous: ErrorWindowCounts | None = None,
    repeat: timedelta = DEFAULT_REPEAT,
) -> list[Decision]:
    """Error-rate, 401-burst and quota-refused incidents of one key: start, reminder or recovery.

    ``counts`` is the window in progress (from :func:`window_start`; it may cover the window only
    partly: it is checked while it runs). ``previous`` is the whole window before it, which
    decides a recovery: an incident ends when a whole window passes without it.
    """
    held = list(prior)
    minute = window_threshold(counts.start, day_start)
    previous_minute = minute - int(policy.window.total_seconds() // 60)
    decisions = []
    for rule in (RULE_ERROR_RATE, RULE_AUTH_BURST, RULE_QUOTA_REFUSED):
        fired_before = previous is not None and window_fires(rule, previous, policy)
        quiet = previous_minute if previous is not None and not fired_before else None
        firing = window_fires(rule, counts, policy)
        decision = incident(
            rule, day, held, firing_minute=minute if firing else None, quiet_minute=quiet,
            repeat=repeat,
        )  # fmt: skip
        if decision is not None:
            decisions.append(decision)
    return decisions


def window_fires(rule: str, counts: ErrorWindowCounts, policy: ErrorPolicy) -> bool:
    """Whether the windowed ``rule`` fires on ``counts``."""
    if rule == RULE_ERROR_RATE:
        return counts.calls >= policy.min_calls and counts.share >= policy.share
    if rule == RULE_AUTH_BURST:
        return counts.unauthorized >= policy.min_unauthorized
    return counts.quota_refused >= policy.min_quota_refused


def incident(
    rule: str,
    day: date,
    prior: Iterable[PriorAlert],
    *,
    firing_minute: int | None,
    quiet_minute: int | None,
    repeat: timedelta = DEFAULT_REPEAT,
) -> Decision | None:
    """The next step of ``rule``'s incident on ``day``, if any.

    ``firing_minute``: a window (minute of the quota day) in which the rule fires now.
    ``quiet_minute``: a whole window in which it did not fire. An incident is open from its first
    firing window until its ``<rule>_recovered`` row (whose threshold is the last firing window).

    >>> d = date(2026, 3, 10)
    >>> incident("error_rate", d, [], firing_minute=600, quiet_minute=None).threshold
    600
    >>> held = [PriorAlert("error_rate", 600, d)]
    >>> ongoing = incident("error_rate", d, held, firing_minute=615, quiet_minute=None)
    >>> ongoing.send, ongoing.reason
    (False, 'still firing; next reminder from 11:00 into the day')
    >>> incident("error_rate", d, held, firing_minute=None, quiet_minute=615).rule
    'error_rate_recovered'
    """
    rows = [p for p in prior if p.day == day and p.rule == rule]
    recovered = {p.threshold for p in prior if p.day == day and p.rule == rule + RECOVERED}
    last = max((p.threshold for p in rows), default=None)
    open_ = last is not None and last not in recovered
    if firing_minute is not None:
        if any(p.threshold == firing_minute for p in rows):
            return None
        if not open_:
            return Decision(rule, firing_minute, day)
        notified = max((p.threshold for p in rows if p.notified), default=last or 0)
        every = int(repeat.total_seconds() // 60)
        if firing_minute - notified >= every:
            return Decision(rule, firing_minute, day, reason="reminder")
        due = notified + every
        return Decision(
            rule,
            firing_minute,
            day,
            send=False,
            reason=f"still firing; next reminder from {due // 60:02d}:{due % 60:02d} into the day",
        )
    if open_ and last is not None and quiet_minute is not None and quiet_minute > last:
        return Decision(rule + RECOVERED, last, day)
    return None


@dataclass(frozen=True, slots=True)
class LatencyWindow:
    """One model's calls in one whole window: how many, and how many slower than ``limit_ms``."""

    model: str
    start: datetime
    end: datetime
    calls: int
    over: int
    limit_ms: float
    p95_ms: float | None = None

    @property
    def firing(self) -> bool:
        """Whether the p95 is over the limit: more than 5 % of the calls are slower than it."""
        return self.calls >= LATENCY_MIN_CALLS and self.over * 20 > self.calls


def latency_alert(
    rule: str,
    window: LatencyWindow,
    day: date,
    day_start: datetime,
    prior: Iterable[PriorAlert],
    repeat: timedelta = DEFAULT_REPEAT,
) -> Decision | None:
    """The latency (or time-to-first-token) incident step for one model's last whole window."""
    minute = window_threshold(window.start, day_start)
    firing = window.firing
    return incident(
        rule,
        day,
        prior,
        firing_minute=minute if firing else None,
        quiet_minute=None if firing else minute,
        repeat=repeat,
    )


@dataclass(frozen=True, slots=True)
class Silence:
    """Alerts of ``rule`` (or every rule: ``all``), of one key or all, from ``starts_at`` until
    ``ends_at``."""

    id: int
    rule: str
    key_id: str | None
    starts_at: datetime
    ends_at: datetime

    def covers(self, rule: str, key_id: str, now: datetime) -> bool:
        """Whether an alert of ``rule`` for ``key_id`` decided at ``now`` is silenced.

        A silence of a rule covers its recoveries too.
        """
        rule = rule.removesuffix(RECOVERED)
        return (
            self.starts_at <= now < self.ends_at
            and self.rule in (rule, ALL_RULES)
            and (self.key_id is None or self.key_id == key_id)
        )


def silenced_by(
    silences: Iterable[Silence], rule: str, key_id: str, now: datetime
) -> Silence | None:
    """The silence that covers this alert, if any (the one ending last)."""
    covering = [s for s in silences if s.covers(rule, key_id, now)]
    return max(covering, key=lambda s: s.ends_at, default=None)


def digest_due(
    yesterday: date,
    day_start: datetime,
    now: datetime,
    requests_yesterday: int,
    has_recipients: bool,
    prior: Iterable[PriorAlert],
    delay: timedelta = DIGEST_DELAY,
) -> Decision | None:
    """Yesterday's digest for a key that made calls then and has somewhere to send it.

    ``day_start`` is the start of today (yesterday's reset). Sent once, ``delay`` after it.
    """
    if requests_yesterday <= 0 or not has_recipients or now < day_start + delay:
        return None
    if _held(prior, RULE_DIGEST, yesterday):
        return None
    return Decision(RULE_DIGEST, 0, yesterday)
