"""``longcat-monitor export``: the exact content of each format, quota-day bounds, the key filter,
the daily and hourly rollups, constant memory, and a progress bar only on a terminal."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from monitor.cli import cli
from monitor.config import get_settings
from monitor.records import CallRecord
from monitor.store import export as store_export
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine
from monitor.store.keys import add_key

KEY_A = "k_" + "a" * 24
KEY_B = "k_" + "b" * 24
#: 2026-03-01 is a quota day in Beijing time: 2026-02-28 16:00 to 2026-03-01 16:00 UTC.
FIRST = datetime(2026, 2, 28, 16, 0, tzinfo=UTC)
LAST = datetime(2026, 3, 1, 15, 59, 59, 999999, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("MONITOR_DATABASE_URL", database_url)
    get_settings.cache_clear()
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["export", *args], catch_exceptions=False)


def seed(engine: Engine) -> None:
    """The two calls of EXPECTED_ROWS on quota day 2026-03-01, and one call just outside it on
    each side."""
    records = [
        CallRecord(
            **{name: value for name, value in row.items() if name != "host"}
            | {"started_at": datetime.fromisoformat(row["started_at"])}
        )
        for row in EXPECTED_ROWS
    ]
    records += [
        # just outside the quota day on each side
        CallRecord(FIRST - timedelta(microseconds=1), "openai", "/x", key_id=KEY_A, event_id="e0"),
        CallRecord(LAST + timedelta(microseconds=1), "openai", "/x", key_id=KEY_A, event_id="e3"),
    ]
    with engine.begin() as conn:
        insert_calls(conn, records, host="host-1")
        add_key(conn, key_id=KEY_A, name="search", hint="aaaa", now=FIRST)


CALL_COLUMNS = (
    "event_id,started_at,key_id,key_hint,api,method,endpoint,model,stream,status_code,"
    "error_type,error_code,error_message,retry_after_s,latency_ms,ttft_ms,input_tokens,"
    "output_tokens,total_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,"
    "usage_source,attempt,request_id,client,labels,source,host"
)
EXPECTED_CSV = (
    f"{CALL_COLUMNS}\n"
    f"e1,2026-02-28T16:00:00+00:00,{KEY_A},aaaa,openai,POST,/openai/v1/chat/completions,"
    "LongCat-2.0,true,200,,,,,1250.5,180.25,1200,300,1500,1000,,120,reported,0,,"
    'openai-python 3.63.0,"{""team"":""search"",""user"":""zoë""}",wrapper,host-1\n'
    f"e2,2026-03-01T15:59:59.999999+00:00,{KEY_B},bbbb,anthropic,POST,/anthropic/v1/messages,"
    'LongCat-2.0,false,429,rate_limit,,"slow down, ""please""",,12.0,,,,,,,,none,1,,,{},'
    "wrapper,host-1\n"
)
EXPECTED_ROWS: list[dict[str, Any]] = [
    {
        "event_id": "e1",
        "started_at": "2026-02-28T16:00:00+00:00",
        "key_id": KEY_A,
        "key_hint": "aaaa",
        "api": "openai",
        "method": "POST",
        "endpoint": "/openai/v1/chat/completions",
        "model": "LongCat-2.0",
        "stream": True,
        "status_code": 200,
        "error_type": None,
        "error_code": None,
        "error_message": None,
        "retry_after_s": None,
        "latency_ms": 1250.5,
        "ttft_ms": 180.25,
        "input_tokens": 1200,
        "output_tokens": 300,
        "total_tokens": 1500,
        "cache_read_tokens": 1000,
        "cache_write_tokens": None,
        "reasoning_tokens": 120,
        "usage_source": "reported",
        "attempt": 0,
        "request_id": None,
        "client": "openai-python 3.63.0",
        "labels": {"team": "search", "user": "zoë"},
        "source": "wrapper",
        "host": "host-1",
    },
    {
        "event_id": "e2",
        "started_at": "2026-03-01T15:59:59.999999+00:00",
        "key_id": KEY_B,
        "key_hint": "bbbb",
        "api": "anthropic",
        "method": "POST",
        "endpoint": "/anthropic/v1/messages",
        "model": "LongCat-2.0",
        "stream": False,
        "status_code": 429,
        "error_type": "rate_limit",
        "error_code": None,
        "error_message": 'slow down, "please"',
        "retry_after_s": None,
        "latency_ms": 12.0,
        "ttft_ms": None,
        "input_tokens": None,
        "output_tokens": None,
        "total_tokens": None,
        "cache_read_tokens": None,
        "cache_write_tokens": None,
        "reasoning_tokens": None,
        "usage_source": "none",
        "attempt": 1,
        "request_id": None,
        "client": None,
        "labels": {},
        "source": "wrapper",
        "host": "host-1",
    },
]
DAY = ("--from", "2026-03-01", "--to", "2026-03-01")
COMMAND = str(Path(sys.executable).parent / "longcat-monitor")


def test_csv_holds_exactly_the_calls_of_the_quota_days(engine: Engine) -> None:
    seed(engine)
    result = run("calls", *DAY, "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == EXPECTED_CSV
    assert result.stderr == ""  # not a terminal: no progress bar


def test_jsonl_holds_exactly_the_calls_of_the_quota_days(engine: Engine) -> None:
    seed(engine)
    result = run("calls", *DAY, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == EXPECTED_ROWS


def test_parquet_holds_exactly_the_calls_of_the_quota_days(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    path = tmp_path / "calls.parquet"
    result = run("calls", *DAY, "--format", "parquet", "-o", str(path))
    assert result.exit_code == 0, result.output
    table = pq.read_table(path)
    assert table.column_names == CALL_COLUMNS.split(",")
    assert str(table.schema.field("started_at").type) == "timestamp[us, tz=UTC]"
    rows = table.to_pylist()
    for row in rows:
        row["started_at"] = row["started_at"].isoformat()
        row["labels"] = json.loads(row["labels"])
    assert rows == EXPECTED_ROWS


def test_key_filter_and_output_file(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    path = tmp_path / "search.csv"
    result = run("calls", "--from", "2026-02-28", "--to", "2026-03-02", "--key", "search", "-o",
                 str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert [r["event_id"] for r in rows] == ["e0", "e1", "e3"]
    unknown = run("calls", *DAY, "--key", "nobody")
    assert unknown.exit_code == 1
    assert "no key named 'nobody'" in unknown.stderr


def test_daily_and_hourly_rollups(engine: Engine) -> None:
    seed(engine)
    tick = CliRunner().invoke(cli, ["tick"], catch_exceptions=False)
    assert tick.exit_code == 0, tick.output
    daily = run("daily", *DAY, "--format", "jsonl")
    rows = [json.loads(line) for line in daily.stdout.splitlines()]
    assert [(r["key_id"], r["day"], r["requests"], r["errors"]) for r in rows] == [
        (KEY_A, "2026-03-01", 1, 0),
        (KEY_B, "2026-03-01", 1, 1),
    ]
    assert rows[0]["total_tokens"] == 1500
    assert rows[1]["errors_by_class"] == {"rate_limit": 1}
    hourly = run("hourly", *DAY, "--format", "csv")
    hours = list(csv.DictReader(io.StringIO(hourly.stdout)))
    assert [(h["key_id"], h["hour"], h["stream"], h["requests"]) for h in hours] == [
        (KEY_A, "2026-02-28T16:00:00+00:00", "true", "1"),
        (KEY_B, "2026-03-01T15:00:00+00:00", "false", "1"),
    ]


def test_bad_ranges_are_refused(engine: Engine) -> None:
    assert run("calls", "--from", "2026-03-02", "--to", "2026-03-01").exit_code == 2
    assert run("calls", "--from", "March", "--to", "2026-03-01").exit_code == 2


def _seed_many(engine: Engine, first: int, count: int) -> None:
    batch = 10_000
    with engine.begin() as conn:
        for start in range(first, count, batch):
            insert_calls(
                conn,
                [
                    CallRecord(
                        FIRST + timedelta(milliseconds=i),
                        "openai",
                        "/openai/v1/chat/completions",
                        key_id=KEY_A,
                        key_hint="aaaa",
                        model="LongCat-2.0",
                        status_code=200,
                        latency_ms=100.0,
                        input_tokens=i,
                        output_tokens=10,
                        total_tokens=i + 10,
                        usage_source="reported",
                        labels={"team": "search"},
                    )
                    for i in range(start, min(start + batch, count))
                ],
            )


def _export_peak(file_format: str, path: Path) -> int:
    tracemalloc.start()
    try:
        result = run("calls", *DAY, "--format", file_format, "-o", str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    return peak


@pytest.mark.slow
def test_memory_stays_flat_as_rows_grow_tenfold(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # batches of 1,000 rows instead of 10,000, so 4 batches against 40 show the same as 20
    # against 200 would, in a tenth of the time (tracemalloc slows every allocation down)
    monkeypatch.setattr(store_export, "DEFAULT_FETCH_ROWS", 1_000)
    peaks: dict[str, list[int]] = {"csv": [], "jsonl": [], "parquet": []}
    seeded = 0
    for count in (4_000, 40_000):
        _seed_many(engine, seeded, count)
        seeded = count
        for file_format, found in peaks.items():
            found.append(_export_peak(file_format, tmp_path / f"{count}.{file_format}"))
    # ten times the rows, about the same peak: one batch at a time (read whole, the 40,000
    # rows would take ten times the memory of the 4,000)
    for file_format, (small, large) in peaks.items():
        assert large < small * 1.5, (file_format, small, large)
    assert len(pq.read_table(tmp_path / "40000.parquet")) == 40_000


def test_a_progress_bar_on_a_terminal_only(engine: Engine, tmp_path: Path) -> None:
    seed(engine)
    path = tmp_path / "out.csv"
    leader, follower = pty.openpty()
    try:
        run_on_tty = subprocess.run(
            [COMMAND, "export", "calls", *DAY, "-o", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=120,
            env={**os.environ, "COLUMNS": "100"},
        )
        os.close(follower)
        follower = -1
        shown = os.read(leader, 65536).decode()
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert run_on_tty.returncode == 0
    assert "calls" in shown and "100%" in shown
    assert path.read_text(encoding="utf-8") == EXPECTED_CSV
