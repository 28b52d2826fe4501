"""Channel URLs: names, masking of every common service's secrets, routes and their errors."""

from __future__ import annotations

import pytest

from monitor.alerts.channels import ChannelError, mask_url, parse_channel, parse_channels
from monitor.alerts.routing import (
    RoutesError,
    parse_routes,
    routes_from_document,
    severity_of,
    unknown_channels,
)

#: (URL, channel name, the secret parts that must never be shown)
COMMON = [
    ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts", "slack",
     ["A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"]),
    ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "discord",
     ["JHMHI8qBe7bk2ZwO5U711o3dV_js"]),
    ("workflows://prod-12.westus.logic.azure.com:443/abcdefg123/?signature=Sig0123secret", "teams",
     ["abcdefg123", "Sig0123secret"]),
    ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12315544/", "telegram",
     ["AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"]),
    ("feishu://a1b2c3d4-e5f6-7890-abcd-ef1234567890", "feishu", ["e5f6-7890-abcd"]),
    ("lark://a1b2c3d4e5f6secret", "lark", ["a1b2c3d4e5f6secret"]),
    ("dingtalk://SECa1b2c3d4e5@8c9d0e1f2a3b4c5d6e7f/", "dingtalk",
     ["SECa1b2c3d4e5", "8c9d0e1f2a3b"]),
    ("wecombot://693axxx6-7aoc-4bc4-97a0-0ec2sifa5aaa", "wecom", ["7aoc-4bc4-97a0"]),
    ("pagerduty://integration0key123@apikey0secret456", "pagerduty",
     ["integration0key123", "apikey0secret456"]),
    ("opsgenie://apikey0secret456789", "opsgenie", ["apikey0secret456789"]),
    ("ntfy://alice:ntfyPass99@ntfy.example.com/alerts", "ntfy", ["ntfyPass99"]),
    ("jsons://bot:hunter2@hooks.example.com/hooks/Tq83hd02kdLw", "json",
     ["hunter2", "Tq83hd02kdLw"]),
    ("signed+https://hooks.example.com/longcat/6f1c2e9a77b04d2b", "webhook", ["6f1c2e9a77b04d2b"]),
]  # fmt: skip


@pytest.mark.parametrize(("url", "name", "secrets"), COMMON)
def test_every_common_service_is_named_and_masked(url: str, name: str, secrets: list[str]) -> None:
    channel = parse_channel(url)
    assert channel.name == name
    shown = channel.target
    assert shown.startswith(url.split("://")[0].replace("workflows", "workflow") + "://")
    for secret in secrets:
        assert secret not in shown, shown
    assert url not in repr(channel)


def test_names_urls_with_commas_and_duplicates() -> None:
    channels = parse_channels(
        "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ, "
        "ops=slack://T1JJ3T3L2/A1BRTD4JE/TIiajkdnlazkcOXrIdevi7FR,"
        "json://h.example.com/x?to=a,b, json://h.example.com/y"
    )
    assert [c.name for c in channels] == ["slack", "ops", "json", "json-2"]
    assert channels[2].url == "json://h.example.com/x?to=a,b"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mailto://user:pw@example.com", "MONITOR_SMTP_"),
        ("nosuchservice://secret@x/y", "nosuchservice://****"),
        ("not a url", "not a notification URL"),
        ("email=json://h/x", "not a usable channel name"),
    ],
)
def test_unusable_urls_are_refused_without_their_secret(url: str, message: str) -> None:
    with pytest.raises(ChannelError, match=message.replace("*", r"\*")) as caught:
        parse_channel(url)
    assert "secret" not in str(caught.value) and "pw@" not in str(caught.value)


def test_mask_keeps_the_host_and_drops_the_query() -> None:
    assert mask_url("json://127.0.0.1:8080/hook?token=abc") == "json://127.0.0.1:8080/hook"


def test_routes_from_text_and_toml() -> None:
    text = parse_routes("threshold=slack,email; error_rate=pagerduty\ncritical=pagerduty")
    assert text.table == {
        "quota": ("slack", "email"),
        "error_rate": ("pagerduty",),
        "critical": ("pagerduty",),
    }
    doc = routes_from_document(
        {"routes": {"burn_rate": ["slack"]}, "severity": {"default": "email"}}, "routes.toml"
    )
    merged = doc.merged(text)
    assert merged.channels("forecast", "warning", ["email", "slack"]) == ("email",)
    assert merged.channels("burn_rate", "warning", ["email", "slack"]) == ("slack",)
    # A rule added on another branch is routed by its name, or by severity.
    assert parse_routes("spend=slack").channels("spend", "warning", ["slack", "email"]) == (
        "slack",
    )
    assert merged.channels("balance", "critical", ["pagerduty", "email"]) == ("pagerduty",)
    assert merged.channels("error_rate_recovered", "critical", ["pagerduty"]) == ("pagerduty",)
    assert unknown_channels(text, ["email", "slack"]) == ["pagerduty"]


@pytest.mark.parametrize("bad", ["threshold", "quota=sl ack", "a b=slack"])
def test_bad_routes_say_where(bad: str) -> None:
    with pytest.raises(RoutesError, match="MONITOR_ROUTES"):
        parse_routes(bad)


def test_severities() -> None:
    assert [severity_of("quota", t) for t in (50, 80, 90, 100)] == [
        "info", "warning", "warning", "critical"
    ]  # fmt: skip
    assert severity_of("auth_burst") == severity_of("quota_exhausted") == "critical"
    assert severity_of("spend") == "warning" and severity_of("digest") == "info"
