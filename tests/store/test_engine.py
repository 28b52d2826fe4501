"""Engines and schema checks: SQLite set-up and first-use upgrade, Postgres schema check."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from monitor.store.engine import (
    DatabaseUnavailableError,
    check_schema,
    current_revision,
    describe_url,
    head_revision,
    make_engine,
    normalise_url,
    upgrade_sqlite_on_first_use,
)
from monitor.store.models import ApiCall


def test_postgres_urls_get_psycopg3() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"


def test_passwords_never_appear_in_descriptions_or_errors() -> None:
    url = "postgresql://alice:s3cret-pw@127.0.0.1:1/nowhere"
    assert "s3cret-pw" not in describe_url(url)
    engine = make_engine(url, connect_args={"connect_timeout": 2})
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            check_schema(engine)
    finally:
        engine.dispose()
    assert "s3cret-pw" not in str(caught.value)
    assert "127.0.0.1" in str(caught.value)


def test_sqlite_pragmas(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() > 0
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    finally:
        engine.dispose()


def test_sqlite_first_use_creates_folder_and_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'folder' / 'monitor.db'}"
    engine = make_engine(url)
    try:
        upgrade_sqlite_on_first_use(engine)
        assert current_revision(engine) == head_revision()
        upgrade_sqlite_on_first_use(engine)  # already current: nothing to do
    finally:
        engine.dispose()


def test_postgres_is_checked_never_migrated(empty_postgres_url: str) -> None:
    engine = make_engine(empty_postgres_url)
    try:
        upgrade_sqlite_on_first_use(engine)
        assert current_revision(engine) is None
        problem = check_schema(engine)
    finally:
        engine.dispose()
    assert problem is not None
    assert "has schema revision none, expected " + head_revision() in problem
    assert "run `longcat-monitor db upgrade`" in problem


def test_concurrent_first_use_upgrades_once(tmp_path: Path) -> None:
    """Several processes write their first record to the same new SQLite file at once."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    script = textwrap.dedent(
        f"""
        from datetime import UTC, datetime
        from monitor.records import CallRecord
        from monitor.recording.recorder import Recorder
        from monitor.recording.sql_sink import SqlSink
        recorder = Recorder(SqlSink({url!r}), flush_interval_s=0.05)
        for _ in range(20):
            recorder.submit(CallRecord(started_at=datetime.now(UTC), api="openai", endpoint="/x"))
        assert recorder.flush(timeout=60), recorder.stats()
        assert recorder.shutdown(timeout=10)
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0, 0, 0]
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(ApiCall)).scalar_one() == 80
    finally:
        engine.dispose()
