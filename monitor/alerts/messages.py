"""Pure: the subject, plain text and HTML of each alert e-mail.

An e-mail names the key by its registered name and its hint (the last four characters); the raw
key is never known here, so it cannot leak. Times are shown in the quota time zone ("Beijing
time" for Asia/Shanghai), with the time left until the quota resets.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from monitor.alerts.rules import (
    RULE_AUTH_BURST,
    RULE_DIGEST,
    RULE_ERROR_RATE,
    RULE_FORECAST,
    RULE_QUOTA,
    RULE_QUOTA_REFUSED,
)
from monitor.alerts.spending import RULE_BALANCE, RULE_BUDGET, RULE_PACK_EXPIRY, RULE_UNPRICED

SUBJECT_PREFIX: Final = "[LongCat monitor]"


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """Everything an alert e-mail says. Counts are for ``day`` unless the rule is windowed."""

    rule: str
    threshold: int
    day: date
    key_hint: str
    key_name: str | None
    used: int
    quota: int
    now: datetime
    reset_at: datetime
    tz: ZoneInfo
    forecast_at: datetime | None = None
    tokens_per_hour: float | None = None
    requests: int = 0
    errors: int = 0
    window_start: datetime | None = None
    window_minutes: int = 0
    window_calls: int = 0
    window_errors: int = 0
    window_unauthorized: int = 0
    window_quota_refused: int = 0
    dashboard_url: str | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.quota if self.quota > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


def key_label(name: str | None, hint: str) -> str:
    """``ci-bot (…a1b2)``, or ``unnamed key …a1b2`` for a key seen only in traffic; a pool (no
    hint) by its name alone.

    A hint comes from traffic: a character that is not printable (a line break such as ``\x85``
    or ``\x0b``, which no e-mail header may hold) is shown as ``?``.

    >>> key_label(None, "a\x0bb\x85")
    'unnamed key …a?b?'
    """
    if name and not hint:
        return printable(name)
    hint = printable(hint)
    return f"{printable(name)} (…{hint})" if name else f"unnamed key …{hint}"


def printable(text: str) -> str:
    """``text`` with every character that is not printable (line breaks included) as ``?``."""
    return text if text.isprintable() else "".join(c if c.isprintable() else "?" for c in text)


def zone_label(tz: ZoneInfo) -> str:
    return "Beijing time" if tz.key in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else tz.key


def local_hhmm(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%H:%M")


def duration(span: timedelta) -> str:
    """``5 h 07 min``; ``42 min`` under an hour; never negative."""
    minutes = max(int(span.total_seconds() // 60), 0)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _headline(f: AlertFacts, label: str) -> tuple[str, str]:
    """(subject, first sentence) for the rule."""
    zone = zone_label(f.tz)
    if f.rule == RULE_QUOTA:
        if f.threshold >= 100:
            return (
                f"{label} has used its daily quota",
                f"Key {label} has used {f.percent:.0f}% of its daily quota; further calls will be "
                f"refused until the reset at 00:00 {zone}.",
            )
        return (
            f"{label} passed {f.threshold}% of its daily quota",
            f"Key {label} has used {f.percent:.0f}% of its daily quota "
            f"(alert threshold {f.threshold}%).",
        )
    if f.rule == RULE_FORECAST and f.forecast_at is not None:
        at = local_hhmm(f.forecast_at, f.tz)
        rate = (
            f" at the current rate of {f.tokens_per_hour:,.0f} tokens/hour"
            if (f.tokens_per_hour)
            else ""
        )
        return (
            f"{label} will exhaust its quota at about {at} {zone}",
            f"Key {label} will exhaust its quota at about {at} {zone}{rate}, "
            f"{duration(f.reset_at - f.forecast_at)} before the reset.",
        )
    if f.rule == RULE_ERROR_RATE:
        share = 100.0 * f.window_errors / f.window_calls if f.window_calls else 0.0
        return (
            f"{label}: {share:.0f}% of calls rate-limited or failing",
            f"Key {label}: {f.window_errors} of {f.window_calls} calls ({share:.0f}%) got 429 or "
            f"5xx in the {f.window_minutes} minutes from {_window_at(f)}.",
        )
    if f.rule == RULE_AUTH_BURST:
        return (
            f"{label}: {f.window_unauthorized} calls refused with 401",
            f"Key {label}: {f.window_unauthorized} calls were refused with 401 Unauthorized in the "
            f"{f.window_minutes} minutes from {_window_at(f)}. The key may have been revoked or "
            "mistyped.",
        )
    if f.rule == RULE_QUOTA_REFUSED:
        return (
            f"{label} is being refused: quota or balance exhausted",
            f"Key {label}: {f.window_quota_refused} calls were refused for lack of quota (402, or "
            f"403 insufficient_quota) in the {f.window_minutes} minutes from {_window_at(f)}: "
            "its token quota or its balance is exhausted. Calls keep failing until the quota "
            f"resets at 00:00 {zone} or the balance is topped up.",
        )
    if f.rule == RULE_DIGEST:
        return (
            f"{label}: daily summary for {f.day.isoformat()}",
            f"Key {label} on {f.day.isoformat()}: {f.requests:,} calls, {f.errors:,} errors, "
            f"{f.used:,} tokens ({f.percent:.0f}% of its quota).",
        )
    raise ValueError(f"no message for rule {f.rule!r}")


def _window_at(f: AlertFacts) -> str:
    start = f.window_start or f.now
    return f"{local_hhmm(start, f.tz)} {zone_label(f.tz)}"


def render(facts: AlertFacts) -> RenderedEmail:
    """The e-mail for ``facts``.

    >>> from datetime import timezone
    >>> now = datetime(2025, 1, 1, 6, tzinfo=timezone.utc)
    >>> mail = render(AlertFacts("quota", 80, date(2025, 1, 1), "a1b2", "ci-bot", 400_000,
    ...     500_000, now, now + timedelta(hours=10), ZoneInfo("Asia/Shanghai")))
    >>> mail.subject
    '[LongCat monitor] ci-bot (…a1b2) passed 80% of its daily quota'
    """
    label = key_label(facts.key_name, facts.key_hint)
    subject, headline = _headline(facts, label)
    zone = zone_label(facts.tz)
    lines: list[tuple[str, str]] = []
    if facts.rule != RULE_DIGEST:
        lines.append(
            ("Used today", f"{facts.used:,} / {facts.quota:,} tokens ({facts.percent:.1f}%)")
        )
        lines.append(
            (
                "Quota resets",
                f"00:00 {zone}, in {duration(facts.reset_at - facts.now)}",
            )
        )
        if facts.forecast_at is not None:
            at = local_hhmm(facts.forecast_at, facts.tz)
            lines.append(("Forecast", f"exhausted at about {at} {zone}"))
    lines.append(("Quota day", facts.day.isoformat()))
    return _email(subject, headline, lines, facts.dashboard_url)


def _email(
    subject: str, headline: str, lines: list[tuple[str, str]], dashboard_url: str | None
) -> RenderedEmail:
    """The e-mail: the headline, then one ``name: value`` line (a table row in HTML) each.

    The subject holds names from traffic and configuration: whatever a rule put in it, a
    character no e-mail header may hold is shown as ``?``."""
    if dashboard_url:
        lines = [*lines, ("Dashboard", dashboard_url)]
    text = "\n".join([headline, "", *(f"{k}: {v}" for k, v in lines), "", "-- longcat-monitor", ""])
    rows = "".join(
        f"<tr><th align='left'>{html.escape(k)}</th><td>{_cell(k, v)}</td></tr>" for k, v in lines
    )
    body = (
        "<html><body>"
        f"<p>{html.escape(headline)}</p>"
        f"<table cellpadding='4'>{rows}</table>"
        "<p style='color:#888'>longcat-monitor</p>"
        "</body></html>"
    )
    return RenderedEmail(f"{SUBJECT_PREFIX} {printable(subject)}", text, body)


def _cell(name: str, value: str) -> str:
    if name == "Dashboard":
        return f"<a href='{html.escape(value, quote=True)}'>{html.escape(value)}</a>"
    return html.escape(value)


@dataclass(frozen=True, slots=True)
class SpendingFacts:
    """What a money alert says (:mod:`monitor.alerts.spending`). Amounts are already written
    with their currency; ``subject`` names the pool, key or pack."""

    rule: str
    threshold: int
    day: date
    subject: str
    balance: str = ""
    last_top_up: str = ""
    run_out: date | None = None
    tokens_left: int = 0
    cost_today: str = ""
    budget: str = ""
    unpriced_tokens: int = 0
    dashboard_url: str | None = None


def render_spending(f: SpendingFacts) -> RenderedEmail:
    """The e-mail for a money alert.

    >>> render_spending(SpendingFacts("budget", 100, date(2026, 11, 25), "pool search",
    ...     cost_today="$12.40", budget="$10.00")).subject
    '[LongCat monitor] pool search spent $12.40 today, over its budget of $10.00'
    """
    lines: list[tuple[str, str]] = []
    if f.rule == RULE_BALANCE:
        subject = f"the balance is down to {f.threshold}% of the last top-up"
        headline = (
            f"The estimated balance is {f.balance}, {f.threshold}% or less of the last top-up "
            f"of {f.last_top_up}."
        )
        lines.append(("Estimated balance", f.balance))
        if f.run_out is not None:
            lines.append(("Runs out around", f.run_out.isoformat()))
    elif f.rule == RULE_PACK_EXPIRY:
        subject = f"{f.subject}: {f.tokens_left:,} tokens expire on {f.day.isoformat()}"
        headline = (
            f"Token {f.subject} expires at the end of {f.day.isoformat()} with "
            f"{f.tokens_left:,} tokens unused."
        )
    elif f.rule == RULE_BUDGET:
        subject = f"{f.subject} spent {f.cost_today} today, over its budget of {f.budget}"
        headline = f"{f.subject} has spent {f.cost_today} today; its daily budget is {f.budget}."
        lines.append(("Quota day", f.day.isoformat()))
    elif f.rule == RULE_UNPRICED:
        subject = f"{f.subject}: calls to a model with no price"
        headline = (
            f"{f.unpriced_tokens:,} billed tokens of {f.subject} today are for a model with no "
            "price, so its cost is unknown. Add one with `longcat-monitor prices set`."
        )
        lines.append(("Quota day", f.day.isoformat()))
    else:
        raise ValueError(f"no message for rule {f.rule!r}")
    lines.append(("Note", "estimated from published prices; the platform's bill is authoritative"))
    return _email(subject, headline, lines, f.dashboard_url)
