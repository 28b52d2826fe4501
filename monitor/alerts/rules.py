"""Pure alert rules: given where a key stands and what the ledger already holds, what is due.

No I/O here. Each rule returns :class:`Decision` values; the caller writes each one to the alert
ledger, whose unique row per ``(key_id, day, rule, threshold)`` makes the decision stick even when
several processes decide the same thing at once. ``threshold`` means, per rule:

- ``quota``: the percentage crossed (50, 80, 90, 100 by default).
- ``forecast``: the ordinal of the forecast e-mail that day (1, then 2 if it moved much earlier…).
- ``error_rate`` / ``auth_burst`` / ``quota_refused``: the minute of the quota day at which the
  window starts.
- ``digest``: 0 (one per key per day; ``day`` is the day summarised).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

RULE_QUOTA: Final = "quota"
RULE_FORECAST: Final = "forecast"
RULE_ERROR_RATE: Final = "error_rate"
RULE_AUTH_BURST: Final = "auth_burst"
#: Calls refused because the token quota or the balance is spent (402, 403 insufficient_quota).
RULE_QUOTA_REFUSED: Final = "quota_refused"
RULE_DIGEST: Final = "digest"
RULES: Final = (
    RULE_QUOTA,
    RULE_FORECAST,
    RULE_ERROR_RATE,
    RULE_AUTH_BURST,
    RULE_QUOTA_REFUSED,
    RULE_DIGEST,
)

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
    """The forecast e-mail due, if the key will run out before ``reset_at``.

    Once per key per day; again only when the new forecast is ``resend_advance`` or more earlier
    than the earliest one already in the ledger. Not sent once the quota is used up (the 100 %
    threshold alert says so).
    """
    if exhaust_at is None or exhaust_at >= reset_at or state.used >= state.quota:
        return None
    held = _held(prior, RULE_FORECAST, state.day)
    if held:
        earliest = min((p.forecast_at for p in held if p.forecast_at is not None), default=None)
        if earliest is None or exhaust_at > earliest - resend_advance:
            return None
    ordinal = max((p.threshold for p in held), default=0) + 1
    return Decision(RULE_FORECAST, ordinal, state.day, forecast_at=exhaust_at)


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
) -> list[Decision]:
    """Error-rate, 401-burst and quota-refused alerts for one key's window; each at most once
    per window.

    ``counts.start`` must be a window start from :func:`window_start`; the counts may cover the
    window only partly (it is checked while it runs, then not again once it has been alerted).
    """
    minute = window_threshold(counts.start, day_start)
    held = {(p.rule, p.threshold) for p in prior if p.day == day}
    decisions = []
    if (
        counts.calls >= policy.min_calls
        and counts.share >= policy.share
        and (RULE_ERROR_RATE, minute) not in held
    ):
        decisions.append(Decision(RULE_ERROR_RATE, minute, day))
    if counts.unauthorized >= policy.min_unauthorized and (RULE_AUTH_BURST, minute) not in held:
        decisions.append(Decision(RULE_AUTH_BURST, minute, day))
    if (
        counts.quota_refused >= policy.min_quota_refused
        and (RULE_QUOTA_REFUSED, minute) not in held
    ):
        decisions.append(Decision(RULE_QUOTA_REFUSED, minute, day))
    return decisions


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
