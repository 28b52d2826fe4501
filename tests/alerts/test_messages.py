"""Alert texts: what each e-mail and chat message says, Beijing times, escaping, the dashboard
link, and percentages that never round across a threshold."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor.alerts.messages import AlertFacts, chat, duration, key_label, percent, render

NOW = datetime(2026, 3, 10, 6, 30, tzinfo=UTC)  # 14:30 Beijing
RESET = datetime(2026, 3, 10, 16, 0, tzinfo=UTC)  # 00:00 Beijing on the 11th
BASE = AlertFacts(
    rule="quota",
    threshold=80,
    day=date(2026, 3, 10),
    key_hint="9f3c",
    key_name="search",
    used=412_000,
    quota=500_000,
    now=NOW,
    reset_at=RESET,
    tz=ZoneInfo("Asia/Shanghai"),
)


def test_threshold_email() -> None:
    mail = render(BASE)
    assert mail.subject == "[LongCat monitor] search (…9f3c) passed 80% of its daily quota"
    assert "Used today: 412,000 / 500,000 tokens (82.4%)" in mail.text
    assert "Quota resets: 00:00 Beijing time, in 9 h 30 min" in mail.text
    assert "Dashboard" not in mail.text and "<a " not in mail.html


def test_exhausted_email() -> None:
    mail = render(replace(BASE, threshold=100, used=500_000))
    assert mail.subject.endswith("search (…9f3c) has used its daily quota")
    assert "refused until the reset at 00:00 Beijing time" in mail.text


def test_forecast_email_in_beijing_time() -> None:
    facts = replace(
        BASE,
        rule="burn_rate",
        threshold=1,
        forecast_at=datetime(2026, 3, 10, 12, 5, tzinfo=UTC),
        tokens_per_hour=41_000.4,
    )
    mail = render(facts)
    assert mail.subject.endswith("runs out of quota at about 20:05 Beijing time")
    assert "At the last hour's pace (41,000 tokens/hour), key search (…9f3c) runs out" in mail.text
    assert "at about 20:05 Beijing time, 3 h 55 min before the reset at 00:00" in mail.text
    assert "Forecast: exhausted at about 20:05 Beijing time" in mail.text


def test_other_zone_is_named() -> None:
    mail = render(replace(BASE, tz=ZoneInfo("Europe/Berlin")))
    assert "00:00 Europe/Berlin" in mail.text


def test_windowed_and_digest_emails() -> None:
    window = replace(
        BASE,
        rule="error_rate",
        window_start=NOW,
        window_minutes=15,
        window_calls=40,
        window_errors=12,
    )
    assert (
        "12 of 40 calls (30.0%) got 429 or 5xx in the 15 minutes from 14:30" in render(window).text
    )
    burst = replace(
        BASE, rule="auth_burst", window_start=NOW, window_minutes=15, window_unauthorized=7
    )
    assert "revoked or mistyped" in render(burst).text
    refused = render(
        replace(
            BASE, rule="quota_refused", window_start=NOW, window_minutes=15, window_quota_refused=4
        )
    )
    assert refused.subject.endswith("search (…9f3c) is being refused: quota or balance exhausted")
    assert "4 calls were refused for lack of quota" in refused.text
    digest = render(replace(BASE, rule="digest", requests=1234, errors=5))
    assert digest.subject.endswith("search (…9f3c): daily summary for 2026-03-10")
    assert "1,234 calls, 5 errors, 412,000 tokens (82.4% of its quota)" in digest.text
    assert "Quota resets" not in digest.text


def test_unnamed_key_html_escaping_and_dashboard_link() -> None:
    facts = replace(BASE, key_name="<b>ops</b>", dashboard_url="https://m.example.com/?a=1&b=2")
    mail = render(facts)
    assert "<b>ops</b>" not in mail.html and "&lt;b&gt;ops&lt;/b&gt;" in mail.html
    assert "href='https://m.example.com/?a=1&amp;b=2'" in mail.html
    assert "Dashboard: https://m.example.com/?a=1&b=2" in mail.text
    assert key_label(None, "9f3c") == "unnamed key …9f3c"


def test_unknown_rule_is_an_error() -> None:
    with pytest.raises(ValueError, match="no message"):
        render(replace(BASE, rule="nope"))


def test_duration() -> None:
    assert duration(timedelta(minutes=42)) == "42 min"
    assert duration(timedelta(hours=5, minutes=7)) == "5 h 07 min"
    assert duration(timedelta(seconds=-5)) == "0 min"


@pytest.mark.parametrize(
    ("used", "quota", "text"),
    [
        (504_000, 500_000, "100.8%"),  # over: written as it is, not 101%
        (499_800, 500_000, "99.9%"),  # 99.96 %: never "100%"
        (500_000, 500_000, "100.0%"),
        (399_999, 500_000, "79.9%"),  # just under 80: never "80.0%"
        (400_000, 500_000, "80.0%"),
        (1, 3, "33.3%"),
        (2, 3, "66.6%"),
        (0, 0, "0.0%"),
    ],
)
def test_percent_never_rounds_across_a_threshold(used: int, quota: int, text: str) -> None:
    assert percent(used, quota) == text


def test_percent_is_below_every_threshold_it_has_not_reached() -> None:
    for quota in (3, 7, 500_000, 5_000_000):
        for threshold in (50, 80, 90, 100):
            just_under = threshold * quota // 100 - (1 if threshold * quota % 100 == 0 else 0)
            assert float(percent(just_under, quota).rstrip("%")) < threshold


def test_quota_mail_just_under_a_threshold_does_not_claim_it() -> None:
    mail = render(replace(BASE, threshold=90, used=499_800))
    assert "has used 99.9% of its daily quota" in mail.text
    assert "100%" not in mail.text.replace("100%)", "")


def test_chat_message_is_short_with_the_figure_threshold_reset_and_link() -> None:
    msg = chat(replace(BASE, threshold=100, used=504_000, dashboard_url="https://m.example.com"))
    assert msg.title == "search (…9f3c) has used its daily quota"
    assert msg.fields == (
        ("Used", "100.8% of 500,000 tokens"),
        ("Threshold", "100%"),
        ("Resets", "00:00 Beijing time, in 9 h 30 min"),
        ("Dashboard", "https://m.example.com"),
    )


@pytest.mark.parametrize(
    "facts",
    [
        replace(BASE, rule="burn_rate", forecast_at=NOW + timedelta(hours=2), tokens_per_hour=9e4),
        replace(BASE, rule="error_rate", window_start=NOW, window_minutes=15, window_calls=40,
                window_errors=12, limit="20% of at least 20 calls"),
        replace(BASE, rule="auth_burst", window_start=NOW, window_minutes=15,
                window_unauthorized=7, limit="5 or more 401s"),
        replace(BASE, rule="latency", model="LongCat-2.0", window_start=NOW, window_minutes=15,
                window_calls=120, p95_ms=12_345.0, limit="10,000 ms"),
        replace(BASE, rule="error_rate_recovered", window_start=NOW, window_minutes=15),
        replace(BASE, rule="digest", requests=10, errors=1),
    ],
)  # fmt: skip
def test_every_chat_message_has_three_to_five_fields(facts: AlertFacts) -> None:
    with_link = replace(facts, dashboard_url="https://m.example.com")
    msg = chat(with_link)
    assert 1 <= len(msg.fields) <= 5 and msg.title and msg.text
    assert msg.fields[-1] == ("Dashboard", "https://m.example.com")
    assert len(chat(facts).fields) >= 1


def test_latency_reminder_and_recovery_texts() -> None:
    slow = replace(
        BASE, rule="ttft", model="LongCat-2.0", window_start=NOW, window_minutes=15,
        window_calls=120, p95_ms=3_210.0, limit="2,000 ms", reason="reminder",
    )  # fmt: skip
    mail = render(slow)
    assert mail.subject == (
        "[LongCat monitor] Still firing: model LongCat-2.0: p95 time to first token 3,210 ms"
    )
    assert "Used today" not in mail.text and "Threshold: 2,000 ms" in mail.text
    back = render(replace(BASE, rule="auth_burst_recovered", window_start=NOW, window_minutes=15))
    assert back.subject == (
        "[LongCat monitor] Resolved: search (…9f3c): calls are no longer refused with 401"
    )
