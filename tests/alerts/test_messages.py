"""Alert e-mail texts: what each says, Beijing times, escaping, the dashboard link."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor.alerts.messages import AlertFacts, duration, key_label, render

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
        rule="forecast",
        threshold=1,
        forecast_at=datetime(2026, 3, 10, 12, 5, tzinfo=UTC),
        tokens_per_hour=41_000.4,
    )
    mail = render(facts)
    assert mail.subject.endswith("will exhaust its quota at about 20:05 Beijing time")
    assert "at the current rate of 41,000 tokens/hour, 3 h 55 min before the reset" in mail.text
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
    assert "12 of 40 calls (30%) got 429 or 5xx in the 15 minutes from 14:30" in render(window).text
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
    assert "1,234 calls, 5 errors, 412,000 tokens (82% of its quota)" in digest.text
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
