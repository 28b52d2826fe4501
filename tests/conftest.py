"""Shared fixtures: isolated settings, migrated SQLite and Postgres databases, call records.

Every test runs with ``MONITOR_*`` cleared and ``MONITOR_DATABASE_URL`` pointing into its own
``tmp_path``, so nothing ever touches the real ``~/.longcat-monitor``.

Database fixtures hand out URLs (strings) because the code under test builds its own engines:

- ``sqlite_url``: a fresh, migrated SQLite file in ``tmp_path`` (copied from a session template).
- ``postgres_url``: a throwaway Postgres database for the whole session (``lcm_test_<random>``),
  migrated once and dropped at the end; every table but ``alembic_version`` is emptied before
  each test. Skipped when the server is unreachable, unless ``CI`` is set (then it fails).
- ``database_url``: both of the above, as two parameters (``sqlite``, ``postgres``).
- ``empty_sqlite_url`` / ``empty_postgres_url`` / ``empty_database_url``: unmigrated databases,
  for migration tests.

Tests that use a Postgres fixture get the ``postgres`` marker automatically.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from monitor import config as monitor_config
from monitor import safety
from monitor.config import get_settings
from monitor.recording.recorder import InMemorySink, Recorder, set_recorder
from monitor.records import CallRecord
from monitor.store.engine import make_engine, upgrade

#: The Postgres server the tests use (trust auth); override with LCM_TEST_POSTGRES.
POSTGRES_ADMIN = os.environ.get(
    "LCM_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)
POSTGRES_FIXTURES = frozenset(
    {"postgres_url", "empty_postgres_url", "postgres_server", "_postgres_database"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


# --- isolation ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh settings from a clean environment; the default database lives in ``tmp_path``."""
    for name in list(os.environ):
        # OTEL_* too: an exporter configured on the machine would turn OTLP export on
        if name.startswith((monitor_config.ENV_PREFIX, "OTEL_")):
            monkeypatch.delenv(name)
    home = tmp_path / "monitor-home"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(monitor_config, "DEFAULT_HOME", home)
    monkeypatch.setenv("MONITOR_DATABASE_URL", f"sqlite:///{home / 'monitor.db'}")
    # "Logged once" is per process; each test starts with nothing logged yet.
    monkeypatch.setattr(safety, "_failures", Counter())
    get_settings.cache_clear()
    set_recorder(None)
    yield
    leftover = set_recorder(None)
    if leftover is not None:
        leftover.shutdown(timeout=10)
    get_settings.cache_clear()


# --- records --------------------------------------------------------------------------------


@pytest.fixture
def make_call_record() -> Callable[..., CallRecord]:
    """A factory of plausible successful OpenAI-style records; keyword arguments override."""

    def make(**overrides: Any) -> CallRecord:
        values: dict[str, Any] = {
            "started_at": datetime.now(UTC),
            "api": "openai",
            "endpoint": "/openai/v1/chat/completions",
            "key_id": "k_" + "0" * 24,
            "key_hint": "abcd",
            "model": "LongCat-Flash-Chat",
            "status_code": 200,
            "latency_ms": 120.0,
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "usage_source": "reported",
        }
        values.update(overrides)
        return CallRecord(**values)

    return make


@pytest.fixture
def memory_sink() -> Iterator[InMemorySink]:
    """Make a recorder writing to memory the process default; the sink collects the records."""
    sink = InMemorySink()
    recorder = Recorder(sink, flush_interval_s=0.05)
    set_recorder(recorder)
    yield sink
    recorder.shutdown(timeout=10)


# --- SQLite ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path, _sqlite_template: Path) -> str:
    path = tmp_path / "test.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'empty.db'}"


# --- Postgres -------------------------------------------------------------------------------


def _url_of(dbname: str) -> str:
    params = psycopg.conninfo.conninfo_to_dict(POSTGRES_ADMIN)
    user = params.get("user", "postgres")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", 5432)
    return f"postgresql://{user}@{host}:{port}/{dbname}"


def _admin(statement: sql.Composable) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


def _create_database() -> tuple[str, str]:
    name = f"lcm_test_{secrets.token_hex(6)}"
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, _url_of(name)


def _drop_database(name: str) -> None:
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin connection string, once the server has answered; else skip (fail on CI)."""
    try:
        with psycopg.connect(POSTGRES_ADMIN, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        message = f"Postgres at {POSTGRES_ADMIN!r} is not reachable: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI is set, so this is a failure)", pytrace=False)
        pytest.skip(message)
    return POSTGRES_ADMIN


@pytest.fixture(scope="session")
def _postgres_database(postgres_server: str) -> Iterator[str]:
    name, url = _create_database()
    try:
        engine = make_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        _drop_database(name)


@pytest.fixture
def postgres_url(_postgres_database: str) -> str:
    dbname = _postgres_database.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, dbname=dbname, autocommit=True) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables "
                "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            conn.execute(
                sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)
                )
            )
    return _postgres_database


@pytest.fixture
def empty_postgres_url(postgres_server: str) -> Iterator[str]:
    name, url = _create_database()
    try:
        yield url
    finally:
        _drop_database(name)


# --- both -----------------------------------------------------------------------------------

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """A migrated, empty database: SQLite, then Postgres."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """A database with no tables at all: SQLite, then Postgres."""
    url: str = request.getfixturevalue(f"empty_{request.param}_url")
    return url
