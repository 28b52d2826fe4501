"""Alerts to every channel through ``tick``: Apprise's JSON and form targets and the signed webhook
against HTTP receivers on loopback, e-mail against the real aiosmtpd; routes, retries per channel,
several schedulers, silences, recoveries, the latency rule, and secrets never shown."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from click.testing import CliRunner
from http_receiver import Receiver, running_receiver
from smtp_server import SmtpServer
from sqlalchemy import Engine
from test_jobs import HINT, KEY, T0, calls, concurrent_ticks, insert, register, settings_for

from monitor.alerts.document import verify
from monitor.cli import cli
from monitor.config import Settings, get_settings
from monitor.ledger.jobs import run_tick
from monitor.records import CallRecord
from monitor.store.alerts import ledger_rows
from monitor.store.engine import make_engine, upgrade

SECRET = "whsec-test-0123456789"
TOKEN = "Tq83hd02kdLwSECRETt0ken"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def chat() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


def with_channels(engine: Engine, smtp_server: SmtpServer, urls: str, **extra: Any) -> Settings:
    return settings_for(engine, smtp_server, alert_urls=urls, webhook_secret=SECRET, **extra)


def half_quota(engine: Engine) -> None:
    insert(engine, calls(T0 - timedelta(hours=8), 26, 10_000))  # 52 %


def test_one_alert_reaches_json_form_signed_webhook_and_email(
    engine: Engine, smtp_server: SmtpServer, chat: Receiver, hook: Receiver
) -> None:
    with running_receiver() as form:
        urls = ", ".join(
            [chat.url("json"), form.url("form"), "signed+" + hook.url("http", "/longcat")]
        )
        settings = with_channels(engine, smtp_server, urls)
        register(engine)
        half_quota(engine)
        result = run_tick(engine, settings, T0)
        assert (result.decided, result.sent, result.failed_attempts) == (1, 4, 0)
        [posted] = chat.received
        [formed] = form.received
    body = posted.json()
    assert body["title"] == "search (…9f3c) passed 50% of its daily quota"
    assert "Used: 52.0% of 500,000 tokens" in body["message"]
    assert "Resets: 00:00 Beijing time, in 14 h 00 min" in body["message"]
    assert "Dashboard: https://monitor.example.com" in body["message"]
    assert formed.form()["title"] == body["title"]

    [signed] = hook.received
    assert signed.path == "/longcat"
    headers = {k.lower(): v for k, v in signed.headers.items()}
    sent_at = float(headers["x-monitor-timestamp"])  # the moment of sending, on the real clock
    assert verify(
        SECRET,
        signed.body,
        headers["x-monitor-signature"],
        headers["x-monitor-timestamp"],
        now=sent_at + 5,
    )
    assert not verify("wrong", signed.body, headers["x-monitor-signature"],
                      headers["x-monitor-timestamp"], now=sent_at)  # fmt: skip
    assert not verify(SECRET, signed.body, headers["x-monitor-signature"],
                      headers["x-monitor-timestamp"], now=sent_at + 3600)  # fmt: skip
    doc = signed.json()
    assert (doc["schema"], doc["version"], doc["event"]) == ("longcat-monitor.alert", 1, "alert")
    assert (doc["rule"], doc["threshold"], doc["severity"], doc["day"]) == (
        "quota", 50, "info", "2026-03-10"
    )  # fmt: skip
    assert doc["key"] == {"id": KEY, "name": "search", "hint": HINT}
    assert doc["figures"]["used_tokens"] == 260_000 and doc["figures"]["percent"] == 52.0
    assert doc["dashboard_url"] == "https://monitor.example.com"
    assert doc["reset_at"] == "2026-03-10T16:00:00Z"

    [mail] = smtp_server.received
    assert mail.recipients == ["owner@example.com"] and "260,000 / 500,000" in mail.part("plain")
    with engine.connect() as conn:
        [row] = ledger_rows(conn, KEY)
    assert sorted((d.channel, d.status) for d in row.deliveries) == [
        ("email", "sent"), ("form", "sent"), ("json", "sent"), ("webhook", "sent")
    ]  # fmt: skip


def test_a_channel_failing_twice_then_accepting_gets_exactly_one(
    engine: Engine, smtp_server: SmtpServer, hook: Receiver
) -> None:
    with running_receiver(fail_first=2) as flaky:
        urls = f"{flaky.url('json')}, signed+{hook.url('http')}"
        settings = with_channels(engine, smtp_server, urls)
        half_quota(engine)
        first = run_tick(engine, settings, T0)
        assert (first.sent, first.failed_attempts) == (2, 1)
        assert run_tick(engine, settings, T0 + timedelta(seconds=30)).failed_attempts == 0
        assert run_tick(engine, settings, T0 + timedelta(minutes=1)).failed_attempts == 1
        assert run_tick(engine, settings, T0 + timedelta(minutes=3)).sent == 1
        run_tick(engine, settings, T0 + timedelta(minutes=30))
        assert (len(flaky.received), flaky.refused) == (1, 2)
    # The others were sent once, on the first pass, and never again.
    assert len(hook.received) == 1 and len(smtp_server.received) == 1
    with engine.connect() as conn:
        [row] = ledger_rows(conn, KEY)
    attempts = {d.channel: (d.status, d.attempts) for d in row.deliveries}
    assert attempts == {"json": ("sent", 3), "webhook": ("sent", 1), "email": ("sent", 1)}


def test_three_schedulers_send_each_message_once_per_channel(
    engine: Engine, smtp_server: SmtpServer, chat: Receiver, hook: Receiver
) -> None:
    settings = with_channels(engine, smtp_server, f"{chat.url('json')}, signed+{hook.url('http')}")
    insert(engine, calls(T0 - timedelta(hours=5), 48, 10_000))  # 96 %: 90 % and a burn rate
    steps = [T0 + timedelta(seconds=step) for step in range(3)]
    assert concurrent_ticks(settings, workers=3, times=steps) == []
    with engine.connect() as conn:
        routed = [r for r in ledger_rows(conn, KEY) if r.status == "routed"]
    assert len(routed) >= 1
    titles = sorted(r.document["title"] for r in routed if r.document)
    assert sorted(m.json()["title"] for m in chat.received) == titles
    assert sorted(m.json()["title"] for m in hook.received) == titles
    assert len(smtp_server.received) == len(routed)
    assert all(d.status == "sent" and d.attempts == 1 for r in routed for d in r.deliveries)


def test_routes_send_each_rule_where_it_belongs(
    engine: Engine, smtp_server: SmtpServer, chat: Receiver, hook: Receiver
) -> None:
    settings = with_channels(
        engine,
        smtp_server,
        f"{chat.url('json')}, pager=signed+{hook.url('http')}",
        routes="threshold=json; critical=pager,email; default=email",
    )
    half_quota(engine)
    run_tick(engine, settings, T0)
    assert [m.json()["title"] for m in chat.received] == [
        "unnamed key …9f3c passed 50% of its daily quota"
    ]
    assert hook.received == [] and smtp_server.received == []
    insert(engine, calls(T0 + timedelta(minutes=1), 25, 10_000))  # 102 %: critical
    run_tick(engine, settings, T0 + timedelta(minutes=2))
    # The 100 % crossing is a quota threshold: json. The money alert of the tokens past the
    # quota (a model with no price), decided by the cost rules, is routed by default: e-mail.
    assert [m.json()["title"] for m in chat.received][1:] == [
        "unnamed key …9f3c has used its daily quota"
    ]
    assert hook.received == []
    assert [m.subject for m in smtp_server.received] == [
        "[LongCat monitor] key …9f3c: calls to a model with no price"
    ]


def test_a_route_file_and_severity(
    engine: Engine, smtp_server: SmtpServer, chat: Receiver, tmp_path: Any
) -> None:
    routes = tmp_path / "routes.toml"
    routes.write_text('[routes]\nquota = ["json"]\n\n[severity]\ndefault = ["email"]\n')
    settings = with_channels(engine, smtp_server, chat.url("json"), routes_file=routes)
    insert(engine, calls(T0 - timedelta(minutes=60), 9, 10_000))  # a burn-rate alert only
    run_tick(engine, settings, T0 + timedelta(minutes=30))
    assert chat.received == []
    [mail] = smtp_server.received
    assert "runs out of quota" in mail.subject


def test_secrets_are_masked_in_the_ledger_and_the_log(
    engine: Engine, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    with running_receiver(fail_first=5) as failing:
        url = f"json://bot:hunter2pass@{failing.host}:{failing.port}/hooks/{TOKEN}"
        settings = with_channels(engine, smtp_server, url)
        half_quota(engine)
        caplog.set_level(logging.DEBUG, logger="monitor")
        caplog.set_level(logging.DEBUG, logger="apprise")  # the sender raises it to INFO
        run_tick(engine, settings, T0)
    with engine.connect() as conn:
        [row] = ledger_rows(conn, KEY)
    delivery = row.delivery("json")
    assert delivery is not None and delivery.status == "retrying"
    shown = " ".join([delivery.target, delivery.last_error or "", caplog.text, str(row.document)])
    assert "not sent to json" in caplog.text
    for secret in (TOKEN, "hunter2pass"):
        assert secret not in shown
    assert delivery.target == f"json://bot:****@{failing.host}:{failing.port}/hooks/T...n"


def test_a_bad_url_is_reported_and_the_other_channels_still_work(
    engine: Engine, smtp_server: SmtpServer, chat: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    urls = f"nosuchservice://{TOKEN}@x/y, {chat.url('json')}"
    settings = with_channels(engine, smtp_server, urls)
    half_quota(engine)
    run_tick(engine, settings, T0)
    assert len(chat.received) == 1 and len(smtp_server.received) == 1
    assert "nosuchservice://****" in caplog.text and TOKEN not in caplog.text


def test_a_key_channel_replaces_the_common_one_of_its_name(
    sqlite_url: str, smtp_server: SmtpServer, chat: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    register(engine)
    half_quota(engine)
    with running_receiver() as common:
        monkeypatch.setenv("MONITOR_DATABASE_URL", sqlite_url)
        get_settings.cache_clear()
        try:
            runner = CliRunner()
            out = runner.invoke(cli, ["keys", "set-channels", "search", chat.url("json")])
            assert out.exit_code == 0, out.output
            assert f"search: json → {chat.url('json')}" in out.output
            settings = with_channels(engine, smtp_server, common.url("json"))
            run_tick(engine, settings, T0)
            listed = runner.invoke(cli, ["alerts", "channels"])
        finally:
            get_settings.cache_clear()
            engine.dispose()
        assert common.received == [] and len(chat.received) == 1
    assert "(key search)" in listed.output


def test_a_pool_channel_takes_the_pools_alerts(
    sqlite_url: str, smtp_server: SmtpServer, chat: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool's own channel gets the pool's alerts; its keys' alerts stay on the common one."""
    engine = make_engine(sqlite_url)
    upgrade(engine)
    register(engine)
    half_quota(engine)  # 260,000 tokens: 52 % of the key's quota, past the pool's 100,000
    with running_receiver() as common:
        monkeypatch.setenv("MONITOR_DATABASE_URL", sqlite_url)
        get_settings.cache_clear()
        try:
            runner = CliRunner()
            made = runner.invoke(
                cli, ["pools", "add", "team", "--quota", "100000", "--key", "search"]
            )
            assert made.exit_code == 0, made.output
            out = runner.invoke(cli, ["pools", "set-channels", "team", chat.url("json")])
            assert out.exit_code == 0, out.output
            assert f"pool team: json → {chat.url('json')}" in out.output
            unknown = runner.invoke(cli, ["pools", "set-channels", "nobody", chat.url("json")])
            assert unknown.exit_code == 1 and "no pool named 'nobody'" in unknown.output
            run_tick(engine, with_channels(engine, smtp_server, common.url("json")), T0)
        finally:
            get_settings.cache_clear()
            engine.dispose()
    to_pool = [r.body.decode() for r in chat.received]
    to_common = [r.body.decode() for r in common.received]
    assert to_pool and all("team" in body for body in to_pool)
    assert to_common and not any("pool team" in body for body in to_common)


# --- incidents, silences and recoveries through the tick command ------------------------------


def _env(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, smtp_server: SmtpServer, urls: str
) -> None:
    for name, value in {
        "DATABASE_URL": sqlite_url,
        "SMTP_HOST": smtp_server.host,
        "SMTP_PORT": str(smtp_server.port),
        "ALERT_TO": "team@example.com",
        "ALERT_URLS": urls,
        "LATENCY_P95_MS": "2000",
    }.items():
        monkeypatch.setenv("MONITOR_" + name, value)
    get_settings.cache_clear()


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def errors_at(at: datetime) -> list[CallRecord]:
    return calls(at, 5, 100) + calls(at + timedelta(seconds=10), 20, 0, status=503,
                                     error="server_error")  # fmt: skip


def test_an_incident_sends_once_reminds_and_recovers_through_tick(
    sqlite_url: str, smtp_server: SmtpServer, chat: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, sqlite_url, smtp_server, chat.url("json"))
    engine = make_engine(sqlite_url)
    upgrade(engine)
    try:
        # Failing from 10:00 to 11:10 Beijing time, every window; ticks every 5 minutes to 11:40.
        for minute in range(0, 75, 5):
            insert(engine, errors_at(T0 + timedelta(minutes=minute, seconds=1)))
        for minute in range(2, 102, 5):
            with time_machine.travel(T0 + timedelta(minutes=minute), tick=False):
                _run("tick")
    finally:
        engine.dispose()
        get_settings.cache_clear()
    titles = [m.json()["title"] for m in chat.received]
    assert titles == [
        "unnamed key …9f3c: 80.0% of calls rate-limited or failing",
        "Still firing: unnamed key …9f3c: 80.0% of calls rate-limited or failing",
        "Resolved: unnamed key …9f3c: the error rate is back to normal",
    ]
    assert [m.json()["type"] for m in chat.received] == ["failure", "failure", "success"]
    assert len(smtp_server.received) == 3


def test_a_silence_records_alerts_as_silenced_until_it_is_lifted(
    sqlite_url: str, smtp_server: SmtpServer, chat: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, sqlite_url, smtp_server, chat.url("json"))
    engine = make_engine(sqlite_url)
    upgrade(engine)
    try:
        with time_machine.travel(T0, tick=False):
            out = _run("alerts", "silence", "error_rate", "--for", "30m")
            assert out.startswith("silence #1: error_rate for every key until 2026-03-10 10:30")
            assert "#1  error_rate" in _run("alerts", "silences")
        insert(engine, errors_at(T0 + timedelta(minutes=1)))
        with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
            assert "1 silenced" in _run("tick")
        assert chat.received == [] and smtp_server.received == []
        with engine.connect() as conn:
            [row] = ledger_rows(conn, KEY)
        assert (row.rule, row.status, row.deliveries) == ("error_rate", "silenced", ())
        assert row.detail is not None and row.detail.startswith("silenced by #1 until 10:30")
        # Lifted: the incident goes on (no new start) and its recovery is sent.
        with time_machine.travel(T0 + timedelta(minutes=6), tick=False):
            assert _run("alerts", "unsilence", "1") == "silence #1 ended\n"
            assert _run("alerts", "silences") == "no silence in force\n"
        with time_machine.travel(T0 + timedelta(minutes=31), tick=False):
            _run("tick")
    finally:
        engine.dispose()
        get_settings.cache_clear()
    assert [m.json()["title"] for m in chat.received] == [
        "Resolved: unnamed key …9f3c: the error rate is back to normal"
    ]


def test_latency_p95_over_its_threshold_for_a_window(
    engine: Engine, smtp_server: SmtpServer, chat: Receiver
) -> None:
    settings = with_channels(engine, smtp_server, chat.url("json"), latency_p95_ms=2000)
    slow = [
        CallRecord(
            started_at=T0 + timedelta(seconds=20 * i),
            api="openai",
            endpoint="/openai/v1/chat/completions",
            key_id=KEY,
            key_hint=HINT,
            model="LongCat-2.0",
            status_code=200,
            latency_ms=5_000.0 if i % 4 == 0 else 800.0,
            total_tokens=10,
            usage_source="reported",
        )
        for i in range(40)
    ]
    insert(engine, slow)
    run_tick(engine, settings, T0 + timedelta(minutes=10))  # the window is not over yet
    assert chat.received == []
    run_tick(engine, settings, T0 + timedelta(minutes=15, seconds=5))
    [msg] = chat.received
    assert msg.json()["title"] == "model LongCat-2.0: p95 latency 5,000 ms"
    assert "Threshold: 2,000 ms" in msg.json()["message"]
    run_tick(engine, settings, T0 + timedelta(minutes=30, seconds=5))  # a quiet window
    assert [m.json()["title"] for m in chat.received][1:] == [
        "Resolved: model LongCat-2.0: the p95 latency is back under its threshold"
    ]
    assert len([m for m in smtp_server.received if "LongCat-2.0" in m.subject]) == 2
