"""The scheduler: :func:`monitor.ledger.jobs.run_tick` every minute on APScheduler, one leader.

Several schedulers may run against one database (one per host, say). Only the one holding the
leader lock runs jobs; the others try to take the lock at every interval, so when the leader dies
one of them takes over within about one interval.

- Postgres: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
  connection that is not part of the pool the jobs use. If the leader's process or host dies,
  Postgres ends its session and releases the lock.
- SQLite: a file lock (``filelock``) next to the database file, released by the OS when the
  process dies.

Leadership only saves work: the alert ledger's claims alone guarantee that no e-mail is sent twice
(a deposed leader finishing a tick is harmless). The APScheduler job store is the in-memory one
and the job takes no arguments: nothing, least of all SMTP credentials, is stored by the scheduler.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final, Protocol

import filelock
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from monitor.safety import report_failure

logger = logging.getLogger("monitor.ledger.scheduler")

DEFAULT_INTERVAL_S: Final = 60
#: The advisory lock id of the scheduler leader (an arbitrary constant, "LCMS").
LEADER_LOCK_ID: Final = 0x4C434D53
JOB_ID: Final = "tick"
#: Server-side TCP keepalives on the lock's session (ignored on Unix-socket connections).
KEEPALIVES: Final = {
    "tcp_keepalives_idle": 20,
    "tcp_keepalives_interval": 10,
    "tcp_keepalives_count": 3,
}


class LeaderLock(Protocol):
    """Leadership that can be tried without blocking, checked, and given up."""

    def try_acquire(self) -> bool:
        """True if this process holds the lock now (taking it if free)."""

    def release(self) -> None:
        """Give the lock up (idempotent)."""


class PostgresLeaderLock:
    """A session advisory lock on its own connection (never a pooled job connection)."""

    def __init__(self, engine: Engine, lock_id: int = LEADER_LOCK_ID) -> None:
        # A separate engine without a pool: the lock's connection lives exactly as long as held.
        self._engine = create_engine(engine.url, poolclass=NullPool)
        self._lock_id = lock_id
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def try_acquire(self) -> bool:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT 1"))
                return True
            except SQLAlchemyError as exc:
                # The session is gone, and with it the lock: try again on a new connection.
                logger.warning("lost the leader lock's connection: %s", type(exc).__name__)
                self._drop()
        try:
            conn = self._engine.connect()
        except SQLAlchemyError as exc:
            report_failure("connect for the scheduler leader lock", exc)
            return False
        try:
            # If the leader's host vanishes without closing the socket, have the server notice
            # within about 50 s (20 s idle + 3 probes 10 s apart) and free the lock.
            for name, value in KEEPALIVES.items():
                conn.execute(text(f"SET {name} = {value}"))
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:id)"), {"id": self._lock_id}
                ).scalar_one()
            )
            conn.commit()  # end the transaction; the session lock stays
        except SQLAlchemyError as exc:
            report_failure("take the scheduler leader lock", exc)
            conn.close()
            return False
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": self._lock_id})
                self._conn.commit()
            except SQLAlchemyError:
                pass  # closing the session below releases it anyway
            self._drop()

    def close(self) -> None:
        self.release()
        self._engine.dispose()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except SQLAlchemyError:
                pass


class FileLeaderLock:
    """An exclusive OS file lock next to the SQLite database."""

    def __init__(self, path: str | Path) -> None:
        self._lock = filelock.FileLock(str(path), timeout=0, thread_local=False)

    @property
    def held(self) -> bool:
        return bool(self._lock.is_locked)

    def try_acquire(self) -> bool:
        if self._lock.is_locked:
            return True
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            return False
        return True

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def close(self) -> None:
        self.release()


def leader_lock_for(engine: Engine) -> PostgresLeaderLock | FileLeaderLock:
    """The leader lock suited to ``engine``'s database."""
    if engine.dialect.name == "postgresql":
        return PostgresLeaderLock(engine)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileLeaderLock(str(database) + ".leader.lock")
    raise ValueError(
        "the scheduler needs Postgres or an SQLite file (an in-memory database has one process)"
    )


class LeaderRunner:
    """Runs ``job`` when, and only when, this process holds ``lock``. One call per interval."""

    def __init__(self, lock: LeaderLock, job: Callable[[], object]) -> None:
        self.lock = lock
        self.job = job
        self.leading = False
        self.runs = 0

    def __call__(self) -> bool:
        """Try the lock, run the job if held; true if the job ran. Never raises."""
        try:
            leading = self.lock.try_acquire()
        except Exception as exc:
            report_failure("check scheduler leadership", exc)
            leading = False
        if leading != self.leading:
            logger.info("scheduler is now %s", "the leader" if leading else "a follower")
            self.leading = leading
        if not leading:
            return False
        try:
            self.job()
        except Exception as exc:
            report_failure("run the scheduled jobs", exc)
        self.runs += 1
        return True


def build_scheduler(runner: Callable[[], object], interval_s: float) -> BlockingScheduler:
    """APScheduler wiring: one job, every ``interval_s``, never overlapping, missed runs merged."""
    scheduler = BlockingScheduler(
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone="UTC",
    )
    scheduler.add_job(
        runner,
        IntervalTrigger(seconds=interval_s, timezone="UTC"),
        id=JOB_ID,
        name="rollup, alert rules, e-mail",
        next_run_time=datetime.now(UTC),
    )
    return scheduler


def run_scheduler(
    engine: Engine,
    job: Callable[[], object],
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    lock: PostgresLeaderLock | FileLeaderLock | None = None,
) -> None:
    """Run ``job`` every ``interval_s`` on the leader until SIGINT or SIGTERM; then clean up."""
    lock = lock or leader_lock_for(engine)
    runner = LeaderRunner(lock, job)
    scheduler = build_scheduler(runner, interval_s)
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            logger.info("stopping the scheduler (%s)", signal.Signals(signum).name)
            scheduler.shutdown(wait=True)  # let a running tick finish

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        scheduler.start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.close()
