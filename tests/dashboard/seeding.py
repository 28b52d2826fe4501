"""Seeding a database for the dashboard tests, and reading back what the pages show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from monitor.alerts.delivery import DeliveryError
from monitor.cli.demo import register_keys, write_history
from monitor.cli.demo_traffic import DEMO_KEYS
from monitor.config import load_settings
from monitor.ledger.jobs import run_tick
from monitor.ledger.quota_day import day_bounds, quota_day
from monitor.ledger.rollup import run_rollup
from monitor.records import UNBILLED_ERROR_TYPES, CallRecord
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
BILLED = (
    "COALESCE(SUM(CASE WHEN error_type IS NULL OR error_type NOT IN ({unbilled}) "
    "THEN COALESCE(total_tokens, COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) "
    "ELSE 0 END), 0)"
).format(unbilled=", ".join(f"'{t}'" for t in sorted(UNBILLED_ERROR_TYPES)))


@dataclass
class Seeded:
    url: str
    engine: Engine
    now: datetime

    def scalar(self, sql: str, **params: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(sql), params).scalar() or 0)

    def today_bounds(self) -> tuple[datetime, datetime]:
        return day_bounds(quota_day(self.now, load_settings().tz), load_settings().tz)

    def range_bounds(self, days: int) -> tuple[datetime, datetime]:
        tz = load_settings().tz
        today: date = quota_day(self.now, tz)
        return day_bounds(today - timedelta(days=days - 1), tz)[0], day_bounds(today, tz)[1]

    def billed(self, start: datetime, end: datetime, key_id: str | None = None) -> int:
        where = "started_at >= :start AND started_at < :end AND key_id IS NOT NULL"
        if key_id is not None:
            where += " AND key_id = :key_id"
        return self.scalar(
            f"SELECT {BILLED} FROM api_calls WHERE {where}", start=start, end=end, key_id=key_id
        )

    def count(self, start: datetime, end: datetime, extra: str = "", **params: Any) -> int:
        where = "started_at >= :start AND started_at < :end AND key_id IS NOT NULL" + extra
        return self.scalar(
            f"SELECT COUNT(*) FROM api_calls WHERE {where}", start=start, end=end, **params
        )


def _today_calls(now: datetime) -> list[CallRecord]:
    """A few calls in the last minutes: successes, billed and unbilled failures, labels."""
    _search, support, reports, revoked = DEMO_KEYS
    records = []
    for i in range(10):  # 45,000 tokens: past the 40,000 quota, whatever the hour
        records.append(
            CallRecord(
                started_at=now - timedelta(minutes=5, seconds=i),
                api="openai",
                endpoint="/openai/v1/chat/completions",
                key_id=reports.key_id,
                key_hint=reports.hint,
                model="LongCat-Flash-Thinking",
                status_code=200,
                latency_ms=900.0 + i,
                input_tokens=4000,
                output_tokens=500,
                total_tokens=4500,
                usage_source="reported",
                labels={"feature": "reports"},
            )
        )
    records.append(
        CallRecord(
            started_at=now - timedelta(minutes=3),
            api="openai",
            endpoint="/openai/v1/chat/completions",
            key_id=support.key_id,
            key_hint=support.hint,
            model="LongCat-Flash-Chat",
            stream=True,
            status_code=429,
            error_type="rate_limit",
            error_message="Rate limit reached",
            request_id="req_newest_failure",
            latency_ms=30.0,
        )
    )
    for _ in range(5):
        records.append(
            CallRecord(
                started_at=now - timedelta(minutes=4),
                api="openai",
                endpoint="/openai/v1/chat/completions",
                key_id=revoked.key_id,
                key_hint=revoked.hint,
                model="LongCat-Flash-Chat",
                status_code=401,
                error_type="auth",
                error_message="This API key has been revoked.",
                latency_ms=10.0,
            )
        )
    return records


def seed(database_url: str) -> Seeded:
    """Two weeks of demo history, a few calls today, the rollups and alerts brought up to date.

    ``MONITOR_DATABASE_URL`` and ``MONITOR_ALERT_TO`` must already be set.
    """
    settings = load_settings()
    engine = make_engine(database_url)
    now = datetime.now(UTC)
    register_keys(engine, settings, now)
    write_history(engine, settings, now, days=7)
    with engine.begin() as conn:
        insert_calls(conn, _today_calls(now))
    run_rollup(engine, settings, now, late_window=timedelta(days=9))

    def refuse(email: object) -> None:
        raise DeliveryError("no SMTP server in this test")

    run_tick(engine, settings, now, smtp=refuse)
    return Seeded(database_url, engine, now)


def metrics(app: Any) -> list[tuple[str, str]]:
    return [(m.label, m.value) for m in app.metric]


def metric(app: Any, label: str) -> str:
    values = [m.value for m in app.metric if m.label == label]
    assert values, f"no metric {label!r} in {metrics(app)}"
    return str(values[0])
