"""Shared fixtures: isolated settings, migrated SQLite and Postgres databases, call records,
the simulator and a capturing recorder.

Every test runs with ``MONITOR_*`` cleared and ``MONITOR_DATABASE_URL`` pointing into its own
``tmp_path``, so nothing ever touches the real ``~/.longcat-monitor``.

Database fixtures hand out URLs (strings) because the code under test builds its own engines:

- ``sqlite_url``: a fresh, migrated SQLite file in ``tmp_path`` (copied from a session template).
- ``postgres_url``: a throwaway Postgres database for the whole session (``lcm_test_<random>``),
  migrated once and dropped at the end; every table but ``alembic_version`` is emptied before
  each test. Skipped when the server is unreachable, unless ``CI`` is set (then it fails:
  :func:`dependencies.require`).
- ``database_url``: both of the above, as two parameters (``sqlite``, ``postgres``).
- ``empty_sqlite_url`` / ``empty_postgres_url`` / ``empty_database_url``: unmigrated databases,
  for migration tests.

Tests that use a Postgres fixture get the ``postgres`` marker automatically.

- ``sim``: one LongCat simulator for the whole session (a test that needs other options starts
  its own ``RunningSimulator``).
- ``captured``: a :class:`capture.CapturedCalls` to pass as ``recorder=``.
- ``smtp_server``: a plain SMTP server on loopback that keeps what it receives.
- ``midday``: the clock set to noon Beijing time (and ticking), for a test that reads "now" and
  must not straddle the quota day's reset at midnight; ``recently``: the same promise, with the
  real clock, for a test whose child process reads the time.

Helpers the tests import by name (``tests/`` is on ``sys.path``, as this file's folder):
``waiting.eventually`` to wait for another thread or process, ``dependencies.require`` for a
dependency that must be there on CI, ``capture`` and ``smtp_server``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import time_machine
from capture import CapturedCalls
from dependencies import require
from psycopg import sql
from smtp_server import SmtpServer, running_smtp_server

from monitor import config as monitor_config
from monitor import safety
from monitor.config import get_settings
from monitor.ledger.quota_day import day_start, next_reset, quota_day
from monitor.recording.recorder import InMemorySink, Recorder, set_recorder
from monitor.records import CallRecord
from monitor.simulator import RunningSimulator
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


# --- the clock -----------------------------------------------------------------------------

#: 12:00 Beijing time on 10 March 2026: twelve hours from either end of its quota day.
MIDDAY = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)


@pytest.fixture
def midday() -> Iterator[datetime]:
    """This process's clock set to :data:`MIDDAY`, ticking from there (time-machine): what the
    test and the code it runs in this process call "now" stays inside one quota day. A child
    process keeps the real clock."""
    with time_machine.travel(MIDDAY, tick=True):
        yield MIDDAY


#: How long a test using ``recently`` may run: it waits past midnight when the day ends sooner.
REAL_CLOCK_MARGIN = timedelta(minutes=2)


@pytest.fixture
def recently() -> datetime:
    """Five minutes ago, or the start of today's quota day if that is later: where a test whose
    child process reads the real clock puts "recent" calls. When the day (in the configured
    zone) ends within :data:`REAL_CLOCK_MARGIN`, this first waits until half a minute past its
    end, so the test and its child see one quota day."""
    tz = get_settings().tz
    now = datetime.now(UTC)
    reset = next_reset(now, tz)
    if reset - now < REAL_CLOCK_MARGIN:
        time.sleep((reset - now).total_seconds() + 30)
        now = datetime.now(UTC)
    return max(now - timedelta(minutes=5), day_start(quota_day(now, tz), tz))


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
def captured() -> CapturedCalls:
    """The records a wrapper or gateway submits, when given ``recorder=captured``."""
    return CapturedCalls()


@pytest.fixture
def memory_sink() -> Iterator[InMemorySink]:
    """Make a recorder writing to memory the process default; the sink collects the records."""
    sink = InMemorySink()
    recorder = Recorder(sink, flush_interval_s=0.05)
    set_recorder(recorder)
    yield sink
    recorder.shutdown(timeout=10)


# --- the simulator ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sim() -> Iterator[RunningSimulator]:
    """The LongCat simulator with default options, on a free port, for the whole session."""
    with RunningSimulator() as running:
        yield running


# --- SMTP ----------------------------------------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server that accepts everything and keeps it in ``.received``."""
    with running_smtp_server() as server:
        yield server


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
        require(False, f"Postgres at {POSTGRES_ADMIN!r} ({exc})")
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
