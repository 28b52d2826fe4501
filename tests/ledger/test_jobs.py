"""One pass of every job (rollup → rules → ledger → SMTP) against a migrated database and a real
SMTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from smtp_server import SmtpServer, running_smtp_server
from sqlalchemy import Engine, update

from monitor.alerts.delivery import DeliveryError, Email
from monitor.capture.fingerprint import key_hint, key_id
from monitor.config import Settings, load_settings
from monitor.ledger.jobs import JobPolicy, run_tick
from monitor.records import CallRecord
from monitor.store.alerts import AlertRow, DeliveryRow, RetryPolicy, ledger_rows, recent_alerts
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine, upgrade
from monitor.store.keys import add_key
from monitor.store.models import AlertDelivery

RAW_KEY = "ak_live_TOPSECRETvalue_9f3c"
KEY = key_id(RAW_KEY)
HINT = key_hint(RAW_KEY)
# 10:00 Beijing time on 10 March 2026.
T0 = datetime(2026, 3, 10, 2, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def settings_for(engine: Engine, server: SmtpServer, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "smtp_host": server.host,
        "smtp_port": server.port,
        "alert_to": ("team@example.com",),
        "dashboard_url": "https://monitor.example.com",
    }
    values.update(extra)
    return load_settings(**values)


def calls(
    at: datetime, n: int, tokens: int, *, status: int = 200, error: str | None = None
) -> list[CallRecord]:
    return [
        CallRecord(
            started_at=at + timedelta(seconds=i),
            api="openai",
            endpoint="/openai/v1/chat/completions",
            key_id=KEY,
            key_hint=HINT,
            model="LongCat-Flash-Chat",
            status_code=status,
            error_type=error,
            input_tokens=tokens // 2 if error is None else None,
            output_tokens=tokens - tokens // 2 if error is None else None,
            total_tokens=tokens if error is None else None,
            usage_source="reported" if error is None else "none",
        )
        for i in range(n)
    ]


def insert(engine: Engine, records: list[CallRecord]) -> None:
    with engine.begin() as conn:
        insert_calls(conn, records)


def email(alert: AlertRow) -> DeliveryRow:
    """The alert's e-mail delivery."""
    found = alert.delivery("email")
    assert found is not None, f"no e-mail delivery: {alert.deliveries}"
    return found


def register(engine: Engine, recipients: tuple[str, ...] = ("owner@example.com",)) -> None:
    with engine.begin() as conn:
        add_key(conn, key_id=KEY, name="search", hint=HINT, recipients=recipients, now=T0)


def test_crossings_send_one_email_each_and_name_the_highest(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    settings = settings_for(engine, smtp_server)
    register(engine)
    insert(engine, calls(T0 - timedelta(hours=8), 26, 10_000))  # 260,000 of 500,000: 52 %
    result = run_tick(engine, settings, T0)
    assert (result.decided, result.sent) == (1, 1)
    [mail] = smtp_server.received
    assert mail.recipients == ["owner@example.com"]
    assert mail.subject == "[LongCat monitor] search (…9f3c) passed 50% of its daily quota"
    text, html = mail.part("plain"), mail.part("html")
    assert "260,000 / 500,000 tokens (52.0%)" in text
    assert "00:00 Beijing time, in 14 h 00 min" in text
    assert "https://monitor.example.com" in text and "href='https://monitor.example.com'" in html
    for secret in (RAW_KEY, "TOPSECRET"):
        assert secret not in mail.raw.decode()

    # Nothing new: nothing sent, however often it runs.
    assert run_tick(engine, settings, T0 + timedelta(minutes=1)).sent == 0
    # 52 % → 96 %: one e-mail naming 90 %; 80 % is recorded as superseded, never sent.
    # (Such a jump also forecasts exhaustion before the reset: that e-mail is counted apart.)
    insert(engine, calls(T0 + timedelta(seconds=61), 22, 10_000))
    run_tick(engine, settings, T0 + timedelta(minutes=2))
    run_tick(engine, settings, T0 + timedelta(minutes=3))
    quota_mails = [m.subject for m in smtp_server.received if "of its daily quota" in m.subject]
    assert quota_mails[1:] == ["[LongCat monitor] search (…9f3c) passed 90% of its daily quota"]
    with engine.connect() as conn:
        rows = {(r.rule, r.threshold): r for r in ledger_rows(conn, KEY)}
        assert (email(rows[("quota", 50)]).status, email(rows[("quota", 50)]).attempts) == (
            "sent",
            1,
        )
        assert rows[("quota", 80)].status == "skipped" and rows[("quota", 80)].deliveries == ()
        assert rows[("quota", 80)].detail == "superseded by 90%"
        assert email(rows[("quota", 90)]).sent_at == T0 + timedelta(minutes=2)
        newest = [(r.rule, r.threshold) for r in recent_alerts(conn, 3)]
        assert newest == [("burn_rate", 1), ("quota", 80), ("quota", 90)]


def test_same_crossing_on_the_next_beijing_day_alerts_again(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    settings = settings_for(engine, smtp_server)
    last_second = datetime(2026, 3, 10, 15, 59, 59, tzinfo=UTC)  # 23:59:59 Beijing
    midnight = datetime(2026, 3, 10, 16, 0, 0, tzinfo=UTC)  # 00:00:00 Beijing, 11 March
    insert(engine, calls(last_second - timedelta(seconds=30), 26, 10_000))
    run_tick(engine, settings, last_second)
    insert(engine, calls(midnight, 26, 10_000))
    run_tick(engine, settings, midnight + timedelta(seconds=30))
    assert [m.subject.endswith("passed 50% of its daily quota") for m in smtp_server.received] == [
        True,
        True,
    ]
    with engine.connect() as conn:
        days = sorted(str(r.day) for r in ledger_rows(conn, KEY) if r.rule == "quota")
    assert days == ["2026-03-10", "2026-03-11"]
    # The digest of the 10th goes out after the reset (once), to MONITOR_ALERT_TO.
    run_tick(engine, settings, midnight + timedelta(minutes=20))
    run_tick(engine, settings, midnight + timedelta(minutes=21))
    digests = [m for m in smtp_server.received if "daily summary for 2026-03-10" in m.subject]
    assert len(digests) == 1
    assert "26 calls, 0 errors, 260,000 tokens (52.0% of its quota)" in digests[0].part("plain")


def test_smtp_failing_twice_then_accepting_sends_exactly_one(engine: Engine) -> None:
    with running_smtp_server(fail_first=2) as server:
        settings = settings_for(engine, server)
        insert(engine, calls(T0 - timedelta(hours=5), 30, 10_000))
        first = run_tick(engine, settings, T0)
        assert (first.sent, first.failed_attempts) == (0, 1)
        with engine.connect() as conn:
            [alert] = ledger_rows(conn, KEY)
        row = email(alert)
        assert (alert.status, row.status, row.attempts) == ("routed", "retrying", 1)
        assert row.last_error is not None and "451" in row.last_error
        assert row.next_attempt_at == T0 + timedelta(minutes=1)
        # Before the backoff is over: no attempt.
        assert run_tick(engine, settings, T0 + timedelta(seconds=30)).failed_attempts == 0
        assert run_tick(engine, settings, T0 + timedelta(minutes=1)).failed_attempts == 1
        with engine.connect() as conn:
            [alert] = ledger_rows(conn, KEY)
        assert email(alert).next_attempt_at == T0 + timedelta(minutes=3)  # backoff doubled
        assert run_tick(engine, settings, T0 + timedelta(minutes=3)).sent == 1
        run_tick(engine, settings, T0 + timedelta(minutes=10))
        assert len(server.received) == 1
        assert server.handler.refused == 2
        with engine.connect() as conn:
            [alert] = ledger_rows(conn, KEY)
        row = email(alert)
        assert (row.status, row.attempts, row.sent_at) == ("sent", 3, T0 + timedelta(minutes=3))


def test_gives_up_after_max_attempts(engine: Engine, smtp_server: SmtpServer) -> None:
    settings = settings_for(engine, smtp_server)
    insert(engine, calls(T0 - timedelta(hours=5), 30, 10_000))

    def broken(_: Email) -> None:
        raise DeliveryError("SMTP 554: no")

    policy = JobPolicy(retry=RetryPolicy(max_attempts=2))
    run_tick(engine, settings, T0, broken, policy=policy)
    result = run_tick(engine, settings, T0 + timedelta(hours=1), broken, policy=policy)
    assert result.gave_up == 1
    assert (
        run_tick(engine, settings, T0 + timedelta(hours=2), broken, policy=policy).failed_attempts
        == 0
    )
    with engine.connect() as conn:
        [alert] = ledger_rows(conn, KEY)
    row = email(alert)
    assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 2, None)


def test_no_recipients_is_recorded_not_retried(engine: Engine, smtp_server: SmtpServer) -> None:
    settings = settings_for(engine, smtp_server, alert_to=())
    insert(engine, calls(T0 - timedelta(hours=5), 30, 10_000))
    assert run_tick(engine, settings, T0).no_recipients == 1
    run_tick(engine, settings, T0 + timedelta(hours=1))
    assert smtp_server.received == []
    with engine.connect() as conn:
        [row] = ledger_rows(conn, KEY)
    assert (row.status, row.deliveries) == ("no_recipients", ())


def test_claim_left_sending_by_a_crash_is_retried_after_the_lease(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    settings = settings_for(engine, smtp_server)
    insert(engine, calls(T0 - timedelta(hours=5), 30, 10_000))

    def crash(_: Email) -> None:
        raise KeyboardInterrupt  # the process dies between the claim and the send

    with pytest.raises(KeyboardInterrupt):
        run_tick(engine, settings, T0, crash)
    with engine.connect() as conn:
        [row] = ledger_rows(conn, KEY)
    assert email(row).status == "sending"
    assert run_tick(engine, settings, T0 + timedelta(minutes=4)).sent == 0  # lease not over
    assert run_tick(engine, settings, T0 + timedelta(minutes=6)).sent == 1
    assert len(smtp_server.received) == 1


def test_forecast_email_when_the_burn_rate_runs_out_before_the_reset(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    settings = settings_for(engine, smtp_server)
    now = T0 + timedelta(minutes=30)  # 10:30 Beijing; the window starts at 09:00
    insert(engine, calls(T0 - timedelta(minutes=60), 9, 10_000))  # 90,000 in 90 min: 60k/h
    run_tick(engine, settings, now)
    [mail] = smtp_server.received  # 18 %: no threshold yet; 410,000 left at 60k/h: 17:20 Beijing
    assert mail.subject.endswith("runs out of quota at about 17:20 Beijing time")
    assert "At the last hour's pace (60,000 tokens/hour)" in mail.part("plain")
    assert "6 h 40 min before the reset at 00:00 Beijing time" in mail.part("plain")
    # A forecast no earlier is not sent again; a much earlier one is.
    insert(engine, calls(now, 1, 1_000))
    run_tick(engine, settings, now + timedelta(minutes=5))
    assert len(smtp_server.received) == 1
    insert(engine, calls(now + timedelta(minutes=5), 10, 10_000))
    run_tick(engine, settings, now + timedelta(minutes=10))
    assert len(smtp_server.received) == 2 and "runs out of quota" in smtp_server.received[1].subject


def test_error_rate_and_401_burst_once_per_incident(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    settings = settings_for(engine, smtp_server)
    start = T0 + timedelta(minutes=1)
    insert(engine, calls(start, 15, 100))
    insert(engine, calls(start + timedelta(seconds=20), 6, 0, status=429, error="rate_limit"))
    insert(engine, calls(start + timedelta(seconds=30), 5, 0, status=401, error="auth"))
    run_tick(engine, settings, T0 + timedelta(minutes=5))
    run_tick(engine, settings, T0 + timedelta(minutes=6))
    subjects = sorted(m.subject for m in smtp_server.received)
    assert subjects == [
        "[LongCat monitor] unnamed key …9f3c: 23.0% of calls rate-limited or failing",
        "[LongCat monitor] unnamed key …9f3c: 5 calls refused with 401",
    ]
    assert "6 of 26 calls (23.0%) got 429 or 5xx in the 5 minutes from 10:00" in "\n".join(
        m.part("plain") for m in smtp_server.received
    )
    # The next window still firing is recorded, not sent again (the reminder comes after an hour).
    insert(engine, calls(T0 + timedelta(minutes=16), 5, 0, status=401, error="auth"))
    run_tick(engine, settings, T0 + timedelta(minutes=17))
    assert len(smtp_server.received) == 2
    with engine.connect() as conn:
        rows = {(r.rule, r.threshold): r for r in ledger_rows(conn, KEY)}
    ongoing = rows[("auth_burst", 615)]
    assert (ongoing.status, ongoing.deliveries) == ("skipped", ())
    assert ongoing.detail == "still firing; next reminder from 11:00 into the day"


def test_a_burst_of_quota_refusals_sends_its_own_alert(
    engine: Engine, smtp_server: SmtpServer
) -> None:
    settings = settings_for(engine, smtp_server)
    start = T0 + timedelta(minutes=1)
    insert(engine, calls(start, 2, 0, status=402, error="quota_exhausted"))
    insert(engine, calls(start + timedelta(seconds=5), 1, 0, status=403, error="quota_exhausted"))
    insert(engine, calls(start + timedelta(seconds=9), 2, 0, status=403, error="permission"))
    run_tick(engine, settings, T0 + timedelta(minutes=5))
    run_tick(engine, settings, T0 + timedelta(minutes=6))
    [mail] = smtp_server.received
    assert mail.subject == (
        "[LongCat monitor] unnamed key …9f3c is being refused: quota or balance exhausted"
    )
    assert "3 calls were refused for lack of quota" in mail.part("plain")


def concurrent_ticks(
    settings: Settings, *, workers: int, times: list[datetime]
) -> list[BaseException]:
    """``workers`` schedulers, each with its own engine, starting together and ticking once at
    each of ``times`` (no leader); the exceptions they raised."""
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def tick(i: int) -> None:
        own = make_engine(settings.database_url)
        try:
            barrier.wait()
            for at in times:
                run_tick(own, settings, at, worker=f"w{i}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_ticks_send_each_email_once(engine: Engine, smtp_server: SmtpServer) -> None:
    """Several processes' ticks at once, no leader: the ledger alone prevents duplicates."""
    settings = settings_for(engine, smtp_server)
    insert(engine, calls(T0 - timedelta(hours=5), 48, 10_000))  # 96 %
    assert concurrent_ticks(settings, workers=4, times=[T0]) == []
    [mail] = smtp_server.received
    assert mail.subject.endswith("passed 90% of its daily quota")
    with engine.connect() as conn:
        rows = ledger_rows(conn, KEY)
    assert sorted((r.threshold, r.status) for r in rows) == [
        (50, "skipped"),
        (80, "skipped"),
        (90, "routed"),
    ]
    [sent] = [r for r in rows if r.threshold == 90]
    assert [(d.channel, d.status, d.attempts) for d in sent.deliveries] == [("email", "sent", 1)]


def test_ledger_columns_round_trip(engine: Engine, smtp_server: SmtpServer) -> None:
    settings = settings_for(engine, smtp_server)
    insert(engine, calls(T0 - timedelta(hours=5), 30, 10_000))
    run_tick(engine, settings, T0, worker="host-a:1")
    with engine.begin() as conn:
        conn.execute(update(AlertDelivery).values(status="pending"))
        [row] = recent_alerts(conn, 5)
    assert email(row).claimed_by == "host-a:1" and email(row).status == "pending"
    assert row.recipients == ("team@example.com",) and row.severity == "info"
    assert row.subject.startswith("[LongCat monitor]") and "<table" in row.body_html
    assert row.document is not None and row.document["version"] == 1


def _env_for_cli(monkeypatch: pytest.MonkeyPatch, sqlite_url: str, smtp: SmtpServer) -> None:
    from monitor.config import get_settings

    for name, value in {
        "DATABASE_URL": sqlite_url,
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": str(smtp.port),
        "ALERT_TO": "team@example.com",
    }.items():
        monkeypatch.setenv("MONITOR_" + name, value)
    get_settings.cache_clear()


def _tick(expect_exit: int = 0) -> str:
    from click.testing import CliRunner

    from monitor.cli import cli

    result = CliRunner().invoke(cli, ["tick"])
    assert result.exit_code == expect_exit, result.output
    return result.output


def _quota_mails(smtp: SmtpServer) -> list[str]:
    return [m.subject for m in smtp.received if "of its daily quota" in m.subject]


def test_tick_command_end_to_end(
    sqlite_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.config import get_settings

    _env_for_cli(monkeypatch, sqlite_url, smtp_server)
    engine = make_engine(sqlite_url)
    upgrade(engine)
    # The clock is pinned at 14:00 Beijing time, whatever hour the suite runs at: 260,000 tokens
    # over the last 20 minutes are over 50 % of today's quota (and, 10 hours before the reset,
    # spread evenly, no forecast).
    now = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)
    insert(engine, calls(now - timedelta(minutes=20), 26, 10_000))
    engine.dispose()
    try:
        with time_machine.travel(now, tick=True):
            first = _tick()
            assert "alerts" in first and first.count("\n") == 1
            assert _quota_mails(smtp_server) == [
                "[LongCat monitor] unnamed key …9f3c passed 50% of its daily quota"
            ]
            count = len(smtp_server.received)
            second = _tick()
        assert "messages 0 sent" in second
        assert len(smtp_server.received) == count
    finally:
        get_settings.cache_clear()


def test_tick_across_midnight_beijing_time_starts_a_new_quota_day(
    sqlite_url: str, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Calls just before 00:00 Beijing time (16:00 UTC) count toward the day that is ending; a
    tick just after midnight starts the new day from zero and alerts nothing for it."""
    from monitor.config import get_settings
    from monitor.store.key_usage import daily_rows

    _env_for_cli(monkeypatch, sqlite_url, smtp_server)
    engine = make_engine(sqlite_url)
    upgrade(engine)
    before_midnight = datetime(2026, 3, 10, 15, 55, tzinfo=UTC)  # 23:55 Beijing, 10 March
    insert(engine, calls(before_midnight - timedelta(minutes=15), 26, 10_000))
    try:
        with time_machine.travel(before_midnight, tick=True):
            _tick()
        assert _quota_mails(smtp_server) == [
            "[LongCat monitor] unnamed key …9f3c passed 50% of its daily quota"
        ]
        after_midnight = datetime(2026, 3, 10, 16, 5, tzinfo=UTC)  # 00:05 Beijing, 11 March
        # The last calls of the old day arrive just before midnight, the first of the new one
        # just after it.
        insert(engine, calls(datetime(2026, 3, 10, 15, 59, 59, tzinfo=UTC), 1, 10_000))
        insert(engine, calls(datetime(2026, 3, 10, 16, 0, tzinfo=UTC), 3, 10_000))
        with time_machine.travel(after_midnight, tick=True):
            _tick()
        assert len(_quota_mails(smtp_server)) == 1  # nothing for the new day: 30,000 of 500,000
        with engine.connect() as conn:
            days = {(row.day.isoformat(), row.total_tokens) for row in daily_rows(conn, KEY)}
        assert days == {("2026-03-10", 270_000), ("2026-03-11", 30_000)}
    finally:
        engine.dispose()
        get_settings.cache_clear()
