"""Engines, migrations and schema checks: the boundary between the monitor and its database.

SQLite (the embedded default) runs in WAL mode so several processes can write; its schema is
brought to head on first use. Postgres is shared by a team: its schema is only ever changed by
``longcat-monitor db upgrade``, and :func:`check_schema` says when that is needed.
"""

from __future__ import annotations

import importlib
import os
import sqlite3
from pathlib import Path
from typing import Any, Final

import filelock
import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
#: Page cache per connection (KiB): the random event_id index outgrows the 2 MB default fast.
SQLITE_CACHE_KIB: Final = 32_768
#: WAL pages a call-record writer lets pile up before it checkpoints in the middle of a burst
#: (SQLite's own default is 1,000 pages, 4 MB): a writer checkpoints when it is idle instead,
#: so a burst of calls is not slowed by copying pages into the database and syncing it.
SQLITE_WRITER_WAL_PAGES: Final = 8192
#: How long a process waits for another one to finish the first-use SQLite upgrade.
SQLITE_UPGRADE_LOCK_TIMEOUT_S: Final = 120.0
POSTGRES_POOL_SIZE: Final = 5
POSTGRES_MAX_OVERFLOW: Final = 5
POSTGRES_POOL_RECYCLE_S: Final = 1800
POSTGRES_CONNECT_TIMEOUT_S: Final = 10
POSTGRES_POOL_TIMEOUT_S: Final = 30


class StoreError(Exception):
    """The monitor's database cannot be used; the message says why, without secrets."""


class DatabaseUnavailableError(StoreError):
    """The database could not be reached, opened or changed."""


class SchemaNotCurrentError(StoreError):
    """The database's schema is not the one this version of the monitor expects."""


class DataRefusedError(StoreError):
    """The database refused the values of a write, not for being down: the same values will be
    refused again, so they must not be retried as they are."""


#: What a write raises for the values it was given (a NUL or a lone surrogate in a string, a
#: number out of range, a missing required value), as opposed to the database being unreachable,
#: locked or out of date (``OperationalError``, ``InterfaceError``, :class:`StoreError`).
DATA_ERRORS: Final = (
    sa_exc.DataError,
    sa_exc.IntegrityError,
    psycopg.DataError,
    psycopg.IntegrityError,
    ValueError,
    TypeError,
    OverflowError,
)


def normalise_url(url: str | URL) -> URL:
    """Parse ``url``; Postgres URLs get the psycopg 3 driver (``postgresql+psycopg://``)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUnavailableError(f"not a database URL: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def describe_url(url: str | URL | Engine) -> str:
    """``url`` as text with any password masked: the only form put in logs and messages."""
    if isinstance(url, Engine):
        url = url.url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def make_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for ``url`` set up for the monitor's workload.

    SQLite: WAL journal, ``synchronous=NORMAL``, a busy timeout so concurrent writers wait
    rather than fail, foreign keys on, and the file's folder created on first connect.
    Postgres: psycopg 3 and a small pre-pinged pool.

    >>> engine = make_engine("sqlite:///:memory:")
    >>> engine.dialect.name
    'sqlite'
    >>> engine.dispose()
    """
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _make_sqlite_engine(parsed, **options)
    if backend == "postgresql":
        connect_args = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        connect_args.update(options.pop("connect_args", {}))
        defaults: dict[str, Any] = {
            "pool_size": POSTGRES_POOL_SIZE,
            "max_overflow": POSTGRES_MAX_OVERFLOW,
            "pool_recycle": POSTGRES_POOL_RECYCLE_S,
            "pool_timeout": POSTGRES_POOL_TIMEOUT_S,
            "pool_pre_ping": True,
        }
        return create_engine(parsed, connect_args=connect_args, **(defaults | options))
    raise DatabaseUnavailableError(
        f"unsupported database {describe_url(parsed)!r}: expected sqlite:// or postgresql://"
    )


def _make_sqlite_engine(url: URL, **options: Any) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        # One shared connection, or every checkout would see a different empty database.
        options.setdefault("poolclass", StaticPool)
        options.setdefault("connect_args", {"check_same_thread": False})
    engine = create_engine(url, **options)
    path = None if in_memory else Path(str(url.database))

    @event.listens_for(engine, "do_connect")
    def _make_folder(*_: Any) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)

    @event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    return engine


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only (SQLite gives its WAL and
    shared-memory files the database file's permissions); an existing file is left as it is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def defer_sqlite_checkpoints(engine: Engine, pages: int = SQLITE_WRITER_WAL_PAGES) -> None:
    """Let the WAL of ``engine``'s SQLite connections grow to ``pages`` before a commit
    checkpoints it; the owner calls :func:`checkpoint_sqlite` when it has time. No-op elsewhere.
    """
    if sqlite_path(engine) is None:
        return

    @event.listens_for(engine, "connect")
    def _defer(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")


def checkpoint_sqlite(engine: Engine) -> None:
    """Copy what the WAL holds into an SQLite database file, without waiting on other
    connections (a ``PASSIVE`` checkpoint: pages a reader still needs are left for later)."""
    if sqlite_path(engine) is None:
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").close()


def sqlite_path(engine: Engine) -> Path | None:
    """The database file of an SQLite engine; ``None`` for Postgres or an in-memory database."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(str(engine.url.database))


# --- migrations ---------------------------------------------------------------------------


def migrations_location() -> str:
    """The installed ``migrations`` folder (Alembic's ``script_location``)."""
    migrations = importlib.import_module("monitor.migrations")  # the repository's migrations/
    return str(next(iter(migrations.__path__)))


def alembic_config() -> Config:
    """An Alembic configuration built in code: no ``alembic.ini`` is needed."""
    config = Config()
    config.set_main_option("script_location", migrations_location())
    return config


def head_revision() -> str:
    """The revision the code expects the database to be at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise StoreError("no migrations found in " + migrations_location())
    return head


def revisions_between(before: str | None, after: str | None) -> list[str]:
    """The revisions an upgrade from ``before`` to ``after`` applied, oldest first."""
    if after is None or before == after:
        return []
    script = ScriptDirectory.from_config(alembic_config())
    steps = script.iterate_revisions(after, before or "base")
    return [step.revision for step in reversed(list(steps)) if step is not None]


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision; ``None`` for an empty database."""
    with _translate_errors(engine, "read the schema revision of"), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database to ``revision``; return its revision before and after."""
    return _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> tuple[str | None, str | None]:
    """Migrate the database down to ``revision`` (``"base"`` empties it)."""
    return _migrate(engine, "downgrade", revision)


def _migrate(engine: Engine, direction: str, revision: str) -> tuple[str | None, str | None]:
    config = alembic_config()
    with _translate_errors(engine, f"{direction}"), engine.begin() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        config.attributes["connection"] = conn
        if direction == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def check_schema(engine: Engine) -> str | None:
    """``None`` when the database is at the expected revision, else what to do about it.

    Raises :class:`DatabaseUnavailableError` when the database cannot be read at all.
    """
    current = current_revision(engine)
    expected = head_revision()
    if current == expected:
        return None
    return (
        f"database at {describe_url(engine)} has schema revision {current or 'none'}, "
        f"expected {expected}: run `longcat-monitor db upgrade`"
    )


def upgrade_sqlite_on_first_use(engine: Engine) -> None:
    """Bring an SQLite database to head if it is not there yet, once across processes.

    A file lock next to the database serialises processes that start at the same time; the
    first one migrates, the others find the schema current. Postgres is left alone.
    """
    if engine.dialect.name != "sqlite" or check_schema(engine) is None:
        return
    path = sqlite_path(engine)
    if path is None:
        upgrade(engine)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path) + ".lock", timeout=SQLITE_UPGRADE_LOCK_TIMEOUT_S)
    try:
        with lock:
            if check_schema(engine) is not None:
                upgrade(engine)
    except filelock.Timeout as exc:
        raise DatabaseUnavailableError(
            f"gave up waiting for another process to migrate {describe_url(engine)}"
        ) from exc


class _translate_errors:
    """Turn driver and SQLAlchemy errors into :class:`DatabaseUnavailableError` with one line."""

    def __init__(self, engine: Engine, action: str) -> None:
        self.engine = engine
        self.action = action

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _: Any
    ) -> None:
        if exc is None or isinstance(exc, StoreError):
            return
        if isinstance(exc, SQLAlchemyError | OSError | sqlite3.Error):
            raise DatabaseUnavailableError(
                f"cannot {self.action} the database at {describe_url(self.engine)}: {_cause(exc)}"
            ) from exc


def _cause(exc: BaseException) -> str:
    """The first meaningful line of a database error, without SQLAlchemy's boilerplate."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).splitlines() if line.strip()]
    text = lines[0] if lines else type(original).__name__
    return text.removeprefix("connection failed: ")
