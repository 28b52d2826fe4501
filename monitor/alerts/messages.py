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
    RECOVERED,
    RULE_AUTH_BURST,
    RULE_BURN_RATE,
    RULE_DIGEST,
    RULE_ERROR_RATE,
    RULE_LATENCY,
    RULE_QUOTA,
    RULE_QUOTA_REFUSED,
    RULE_TTFT,
)
from monitor.alerts.spending import RULE_BALANCE, RULE_BUDGET, RULE_PACK_EXPIRY, RULE_UNPRICED

SUBJECT_PREFIX: Final = "[LongCat monitor]"
#: A chat message shows at most this many fields.
CHAT_FIELDS: Final = 5


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """Everything an alert says. Counts are for ``day`` unless the rule is windowed.

    ``reason`` is ``reminder`` for the reminder of an incident still firing. ``limit`` says the
    rule's threshold in words for the windowed rules (``20% of at least 20 calls``).
    """

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
    reason: str = ""
    limit: str = ""
    model: str | None = None
    p95_ms: float | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.used / self.quota if self.quota > 0 else 0.0

    @property
    def base_rule(self) -> str:
        return self.rule.removesuffix(RECOVERED)

    @property
    def recovered(self) -> bool:
        return self.rule.endswith(RECOVERED)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """What a chat channel shows: a short title, one sentence and a few ``(name, value)`` fields."""

    title: str
    text: str
    fields: tuple[tuple[str, str], ...]


def percent(used: int, quota: int) -> str:
    """``used`` as a percentage of ``quota``, cut (never rounded) to one decimal.

    Cutting means a figure is never written across a threshold: just under 100 % is never
    "100%", and 100.8 % is "100.8%", not "101%".

    >>> percent(499_800, 500_000), percent(504_000, 500_000), percent(400_000, 500_000)
    ('99.9%', '100.8%', '80.0%')
    """
    if quota <= 0:
        return "0.0%"
    tenths = used * 1000 // quota
    return f"{tenths // 10}.{tenths % 10}%"


def share(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage, cut to one decimal (see :func:`percent`)."""
    return percent(part, whole) if whole else "0.0%"


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


def milliseconds(value: float | None) -> str:
    return f"{value:,.0f} ms" if value is not None else "?"


def _label(f: AlertFacts) -> str:
    if f.model is not None:
        return f"model {f.model}"
    return key_label(f.key_name, f.key_hint)


def _latency_name(rule: str) -> str:
    return "time to first token" if rule == RULE_TTFT else "latency"


def _headline(f: AlertFacts, label: str) -> tuple[str, str]:
    """(subject, first sentence) for the rule."""
    zone = zone_label(f.tz)
    rule = f.base_rule
    used = percent(f.used, f.quota)
    if f.recovered:
        return _recovery(f, label)
    if rule == RULE_QUOTA:
        if f.threshold >= 100:
            return (
                f"{label} has used its daily quota",
                f"Key {label} has used {used} of its daily quota; further calls will be "
                f"refused until the reset at 00:00 {zone}.",
            )
        return (
            f"{label} passed {f.threshold}% of its daily quota",
            f"Key {label} has used {used} of its daily quota (alert threshold {f.threshold}%).",
        )
    if rule == RULE_BURN_RATE and f.forecast_at is not None:
        at = local_hhmm(f.forecast_at, f.tz)
        pace = f" ({f.tokens_per_hour:,.0f} tokens/hour)" if f.tokens_per_hour else ""
        return (
            f"{label} runs out of quota at about {at} {zone}",
            f"At the last hour's pace{pace}, key {label} runs out of its daily quota at about "
            f"{at} {zone}, {duration(f.reset_at - f.forecast_at)} before the reset at "
            f"00:00 {zone}.",
        )
    still = "Still firing: " if f.reason == "reminder" else ""
    if rule == RULE_ERROR_RATE:
        rate = share(f.window_errors, f.window_calls)
        return (
            f"{still}{label}: {rate} of calls rate-limited or failing",
            f"Key {label}: {f.window_errors} of {f.window_calls} calls ({rate}) got 429 or "
            f"5xx in the {f.window_minutes} minutes from {_window_at(f)}.",
        )
    if rule == RULE_AUTH_BURST:
        return (
            f"{still}{label}: {f.window_unauthorized} calls refused with 401",
            f"Key {label}: {f.window_unauthorized} calls were refused with 401 Unauthorized in the "
            f"{f.window_minutes} minutes from {_window_at(f)}. The key may have been revoked or "
            "mistyped.",
        )
    if rule in (RULE_LATENCY, RULE_TTFT):
        what = _latency_name(rule)
        return (
            f"{still}{label}: p95 {what} {milliseconds(f.p95_ms)}",
            f"The p95 {what} of {label} was {milliseconds(f.p95_ms)} over {f.window_calls} "
            f"calls in the {f.window_minutes} minutes from {_window_at(f)} "
            f"(threshold {f.limit}).",
        )
    if rule == RULE_QUOTA_REFUSED:
        return (
            f"{still}{label} is being refused: quota or balance exhausted",
            f"Key {label}: {f.window_quota_refused} calls were refused for lack of quota (402, or "
            f"403 insufficient_quota) in the {f.window_minutes} minutes from {_window_at(f)}: "
            "its token quota or its balance is exhausted. Calls keep failing until the quota "
            f"resets at 00:00 {zone} or the balance is topped up.",
        )
    if rule == RULE_DIGEST:
        return (
            f"{label}: daily summary for {f.day.isoformat()}",
            f"Key {label} on {f.day.isoformat()}: {f.requests:,} calls, {f.errors:,} errors, "
            f"{f.used:,} tokens ({used} of its quota).",
        )
    raise ValueError(f"no message for rule {f.rule!r}")


def _recovery(f: AlertFacts, label: str) -> tuple[str, str]:
    rule = f.base_rule
    what = {
        RULE_ERROR_RATE: "the error rate is back to normal",
        RULE_AUTH_BURST: "calls are no longer refused with 401",
        RULE_QUOTA_REFUSED: "calls are no longer refused for lack of quota",
        RULE_LATENCY: "the p95 latency is back under its threshold",
        RULE_TTFT: "the p95 time to first token is back under its threshold",
    }.get(rule, f"{rule} no longer fires")
    return (
        f"Resolved: {label}: {what}",
        f"Resolved: for {label}, {what} (a whole window of {f.window_minutes} minutes from "
        f"{_window_at(f)} without an alert).",
    )


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
    subject, headline = _headline(facts, _label(facts))
    zone = zone_label(facts.tz)
    lines: list[tuple[str, str]] = []
    if facts.window_start is not None and not facts.recovered:
        lines += _window_lines(facts)
    if facts.rule != RULE_DIGEST and facts.model is None:
        used = percent(facts.used, facts.quota)
        lines.append(("Used today", f"{facts.used:,} / {facts.quota:,} tokens ({used})"))
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


def _window_lines(f: AlertFacts) -> list[tuple[str, str]]:
    window = f"{f.window_minutes} minutes from {_window_at(f)}"
    if f.base_rule in (RULE_LATENCY, RULE_TTFT):
        figure = f"p95 {_latency_name(f.base_rule)}"
        return [
            (figure, f"{milliseconds(f.p95_ms)} over {f.window_calls:,} calls"),
            ("Threshold", f.limit),
            ("Window", window),
        ]
    lines = [
        ("Calls in the window", f"{f.window_calls:,}"),
        ("429 or 5xx", f"{f.window_errors:,} ({share(f.window_errors, f.window_calls)})"),
        ("401 Unauthorized", f"{f.window_unauthorized:,}"),
        ("Refused for lack of quota", f"{f.window_quota_refused:,}"),
        ("Window", window),
    ]
    if f.limit:
        lines.append(("Threshold", f.limit))
    return lines


def chat(facts: AlertFacts) -> ChatMessage:
    """The short form for chat and paging channels: a title and 3 to 5 fields (the figure, the
    threshold, the reset in the quota time zone, a dashboard link).

    >>> from datetime import timezone
    >>> now = datetime(2025, 1, 1, 6, tzinfo=timezone.utc)
    >>> msg = chat(AlertFacts("quota", 100, date(2025, 1, 1), "a1b2", "ci-bot", 504_000,
    ...     500_000, now, now + timedelta(hours=10), ZoneInfo("Asia/Shanghai")))
    >>> msg.title
    'ci-bot (…a1b2) has used its daily quota'
    >>> msg.fields[:2]
    (('Used', '100.8% of 500,000 tokens'), ('Threshold', '100%'))
    """
    f = facts
    title, text = _headline(f, _label(f))
    zone = zone_label(f.tz)
    resets = ("Resets", f"00:00 {zone}, in {duration(f.reset_at - f.now)}")
    used = ("Used", f"{percent(f.used, f.quota)} of {f.quota:,} tokens")
    rule = f.base_rule
    fields: list[tuple[str, str]]
    if f.recovered:
        fields = [("Window", f"{f.window_minutes} min from {_window_at(f)}")]
    elif rule == RULE_QUOTA:
        fields = [used, ("Threshold", f"{f.threshold}%"), resets]
    elif rule == RULE_BURN_RATE and f.forecast_at is not None:
        pace = f"{f.tokens_per_hour:,.0f} tokens/hour" if f.tokens_per_hour else "?"
        fields = [
            ("Runs out", f"about {local_hhmm(f.forecast_at, f.tz)} {zone}"),
            ("Pace (last hour)", pace),
            used,
            resets,
        ]
    elif rule == RULE_ERROR_RATE:
        rate = share(f.window_errors, f.window_calls)
        fields = [("429 or 5xx", f"{f.window_errors} of {f.window_calls} calls ({rate})")]
        fields += [("Threshold", f.limit)] if f.limit else []
        fields += [("Window", f"{f.window_minutes} min from {_window_at(f)}")]
    elif rule == RULE_AUTH_BURST:
        fields = [("401 Unauthorized", f"{f.window_unauthorized} calls")]
        fields += [("Threshold", f.limit)] if f.limit else []
        fields += [("Window", f"{f.window_minutes} min from {_window_at(f)}")]
    elif rule == RULE_QUOTA_REFUSED:
        fields = [
            ("Refused (402/403)", f"{f.window_quota_refused} calls"),
            ("Window", f"{f.window_minutes} min from {_window_at(f)}"),
            resets,
        ]
    elif rule in (RULE_LATENCY, RULE_TTFT):
        fields = [
            (f"p95 {_latency_name(rule)}", f"{milliseconds(f.p95_ms)} ({f.window_calls} calls)"),
            ("Threshold", f.limit),
            ("Window", f"{f.window_minutes} min from {_window_at(f)}"),
        ]
    else:
        fields = [("Calls", f"{f.requests:,}"), ("Errors", f"{f.errors:,}"), used]
    if f.dashboard_url:
        fields.append(("Dashboard", f.dashboard_url))
    return ChatMessage(title, text, tuple(fields[:CHAT_FIELDS]))


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
