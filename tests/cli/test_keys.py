"""``longcat-monitor keys …`` through click's CliRunner, on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, inspect, select, text

from monitor.capture.fingerprint import key_id
from monitor.cli import cli, looks_like_api_key
from monitor.config import get_settings
from monitor.ledger.quota_day import quota_day
from monitor.records import CallRecord
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine, upgrade
from monitor.store.keys import quota_history
from monitor.store.models import Key

RAW_KEY = "ak_3kQ9zW1xV7mN2bP8cL5dR4tY6"
OTHER_KEY = "ak_Zy0XwVu9TsRq8PoNm7LkJi6Hg"


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("MONITOR_DATABASE_URL", database_url)
    monkeypatch.delenv("MONITOR_KEY_SECRET", raising=False)
    monkeypatch.delenv("LONGCAT_API_KEY", raising=False)
    get_settings.cache_clear()
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()
    get_settings.cache_clear()


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["keys", *args], input=input, env=env)


def registered(engine: Engine) -> dict[str, tuple[str, str, list[str]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(Key.name, Key.key_id, Key.hint, Key.recipients))
        return {name: (kid, hint, recipients) for name, kid, hint, recipients in rows}


def dump_database(engine: Engine) -> str:
    """Every row of every table, as text."""
    lines = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                lines.append(f"{table}: {tuple(row)!r}")
    return "\n".join(lines)


def test_add_from_stdin_stores_only_the_fingerprint(engine: Engine, midday: datetime) -> None:
    result = run(
        "add", "search", "--quota", "5,000,000", "--email", "ops@example.com", input=RAW_KEY + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "search" in result.output and "5,000,000" in result.output
    assert registered(engine) == {"search": (key_id(RAW_KEY), RAW_KEY[-4:], ["ops@example.com"])}
    today = quota_day(midday, get_settings().tz)
    with engine.connect() as conn:
        assert [(q.effective_from, q.quota) for q in quota_history(conn, key_id(RAW_KEY))] == [
            (today, 5_000_000)
        ]


def test_add_from_the_environment(engine: Engine) -> None:
    result = run("add", "batch", env={"LONGCAT_API_KEY": OTHER_KEY})
    assert result.exit_code == 0, result.output
    assert registered(engine)["batch"][0] == key_id(OTHER_KEY)


def test_the_raw_key_is_nowhere_in_the_database(engine: Engine) -> None:
    assert run("add", "search", input=RAW_KEY).exit_code == 0
    assert run("add", "batch", env={"LONGCAT_API_KEY": OTHER_KEY}).exit_code == 0
    assert run("set-quota", "search", "5000000").exit_code == 0
    with engine.begin() as conn:
        now = datetime.now(UTC)
        insert_calls(
            conn,
            [
                CallRecord(
                    started_at=now,
                    api="openai",
                    endpoint="/x",
                    key_id=key_id(RAW_KEY),
                    key_hint=RAW_KEY[-4:],
                    total_tokens=10,
                )
            ],
        )
    assert run("list").exit_code == 0
    dump = dump_database(engine)
    assert key_id(RAW_KEY) in dump  # the dump does see the tables
    for raw in (RAW_KEY, OTHER_KEY):
        assert raw not in dump
        assert raw[:-4] not in dump
    path = engine.url.database
    if engine.dialect.name == "sqlite" and path:
        for file in Path(path).parent.glob(Path(path).name + "*"):
            assert RAW_KEY.encode() not in file.read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        ["add", RAW_KEY],
        ["add", "search", RAW_KEY],
        ["add", "search", "--email", RAW_KEY],
        ["add", "Bearer sk-abcdef123456"],
    ],
)
def test_a_key_on_the_command_line_is_refused(engine: Engine, args: list[str]) -> None:
    result = run(*args, input=OTHER_KEY)
    assert result.exit_code == 2
    assert "refusing an API key on the command line" in result.output
    assert RAW_KEY not in result.output
    assert registered(engine) == {}


def test_looks_like_api_key() -> None:
    assert looks_like_api_key(RAW_KEY)
    assert looks_like_api_key("sk-ant-api03-abc")
    assert looks_like_api_key("f3b2c1d0e9a8b7c6d5e4f3a2b1c0")
    for ordinary in ("search", "team-alpha", "5000000", "2026-11-25", "ops@example.com"):
        assert not looks_like_api_key(ordinary)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "search", "--quota", "0"], "positive"),
        (["add", "search", "--quota", "lots"], "whole number"),
        (["add", "search", "--email", "not-an-address"], "not an e-mail address"),
        (["add", "no spaces please"], "not a usable key name"),
        (["set-quota", "unknown", "5000000"], "no key named 'unknown'"),
        (["set-quota", "search", "-5"], "positive"),
        (["set-quota", "search", "5000000", "--from", "2026-02-30"], "YYYY-MM-DD"),
        (["remove", "unknown"], "no key named 'unknown'"),
    ],
)
def test_bad_input_gives_one_clear_message(engine: Engine, args: list[str], message: str) -> None:
    assert run("add", "search", input=RAW_KEY).exit_code == 0
    result = run(*args, input=OTHER_KEY)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_duplicate_name_and_duplicate_key_are_refused(engine: Engine) -> None:
    assert run("add", "search", input=RAW_KEY).exit_code == 0
    same_name = run("add", "search", input=OTHER_KEY)
    assert same_name.exit_code == 1 and "already exists" in same_name.output
    same_key = run("add", "other", input=RAW_KEY)
    assert same_key.exit_code == 1 and "already registered as 'search'" in same_key.output


def test_no_key_given(engine: Engine) -> None:
    result = run("add", "search", input="")
    assert result.exit_code == 1 and "no API key given" in result.output


def test_set_quota_keeps_earlier_days(engine: Engine) -> None:
    assert run("add", "search", input=RAW_KEY).exit_code == 0
    result = run("set-quota", "search", "5000000", "--from", "2026-11-25")
    assert result.exit_code == 0, result.output
    assert "5,000,000 tokens a day from 2026-11-25 (was 500,000)" in result.output
    with engine.connect() as conn:
        history = quota_history(conn, key_id(RAW_KEY))
    assert (date(2026, 11, 25), 5_000_000) in [(q.effective_from, q.quota) for q in history]


def test_list_shows_usage_and_unnamed_keys(engine: Engine, midday: datetime) -> None:
    assert run("add", "search", "--quota", "1000", input=RAW_KEY).exit_code == 0
    now = datetime.now(UTC) - timedelta(seconds=1)
    stray = key_id(OTHER_KEY)
    with engine.begin() as conn:
        insert_calls(
            conn,
            [
                CallRecord(
                    started_at=now,
                    api="openai",
                    endpoint="/x",
                    key_id=key_id(RAW_KEY),
                    key_hint=RAW_KEY[-4:],
                    total_tokens=250,
                ),
                CallRecord(
                    started_at=now,
                    api="openai",
                    endpoint="/x",
                    key_id=stray,
                    key_hint=OTHER_KEY[-4:],
                    total_tokens=50_000,
                ),
            ],
        )
    result = run("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split() == ["NAME", "HINT", "QUOTA", "USED", "TODAY", "%", "USED"]
    assert lines[2].split() == ["search", "…" + RAW_KEY[-4:], "1,000", "250", "25.0%"]
    assert lines[3].split() == ["(unnamed)", "…" + OTHER_KEY[-4:], "500,000", "50,000", "10.0%"]


def test_remove(engine: Engine) -> None:
    assert run("add", "search", input=RAW_KEY).exit_code == 0
    result = run("remove", "search")
    assert result.exit_code == 0 and "removed search" in result.output
    assert registered(engine) == {}
