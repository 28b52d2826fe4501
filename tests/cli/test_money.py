"""``longcat-monitor prices / pools / billing`` through click's CliRunner, on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from monitor.cli import cli
from monitor.config import get_settings
from monitor.records import CallRecord
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine, upgrade
from monitor.store.models import DailyUsage

KEY = "ak_3kQ9zW1xV7mN2bP8cL5dR4tY6"


@pytest.fixture
def database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MONITOR_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("MONITOR_KEY_SECRET", raising=False)
    get_settings.cache_clear()
    engine = make_engine(sqlite_url)
    upgrade(engine)
    engine.dispose()
    yield sqlite_url
    get_settings.cache_clear()


def run(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == 0, result.output
    return result


def test_prices_set_lists_and_charges_the_days_again(database: str) -> None:
    listed = run("prices", "list", "--currency", "cny", "--on", "2026-11-25").output
    assert "LongCat-2.0" in listed and "2.00" in listed and "5.00/0.10/20.00" in listed
    run("keys", "add", "bot", input=KEY + "\n")
    engine = make_engine(database)
    at = datetime(2026, 11, 25, 2, tzinfo=UTC)
    with engine.begin() as conn:
        from monitor.capture.fingerprint import key_id

        insert_calls(
            conn,
            [
                CallRecord(
                    started_at=at,
                    api="openai",
                    endpoint="/openai/v1/chat/completions",
                    key_id=key_id(KEY, None),
                    model="LongCat-2.0",
                    status_code=200,
                    input_tokens=500_000,
                    output_tokens=1_000_000,
                    total_tokens=1_500_000,
                )
            ],
        )
    run("tick")
    cost = select(DailyUsage.cost_nanos)
    with engine.connect() as conn:
        # (500,000 × 300 + 1,000,000 × 1,200) × 1,000,000 / 1,500,000 paid past the free quota
        assert conn.execute(cost).scalar_one() == 900_000_000
    out = run(
        "prices",
        *("set", "LongCat-2.0", "--uncached-input", "0.75", "--cached-input", "0.015"),
        *("--output", "2.95", "--from", "2026-11-25"),
    ).output
    assert "USD 0.75 uncached input" in out
    with engine.connect() as conn:
        # (500,000 × 750 + 1,000,000 × 2,950) × 2 / 3 = 2,216,666,666.67
        assert conn.execute(cost).scalar_one() == 2_216_666_667
    assert (
        "1 key or pool days from 2026-11-01 charged again in USD"
        in run("prices", "recompute", "--from", "2026-11-01").output
    )
    with engine.connect() as conn:
        assert conn.execute(cost).scalar_one() == 2_216_666_667
    engine.dispose()
    run("billing", "top-up", "10", "--date", "2026-11-24")
    status = run("billing", "status").output
    assert "balance $7.78 (78% of the last top-up of $10.00)" in status


def test_bad_input_is_one_line(database: str) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "prices",
            "set",
            "M",
            "--uncached-input",
            "0.0001",
            "--cached-input",
            "0",
            "--output",
            "1",
        ],
    )
    assert result.exit_code == 1
    assert "at most 3 decimal places" in result.output
    result = CliRunner().invoke(cli, ["billing", "top-up", "5", "--currency", "EUR"])
    assert "a currency is one of USD, CNY" in result.output
