"""Leader election and the scheduler: file locks on SQLite, advisory locks on the real Postgres,
three schedulers sharing one database, a killed leader replaced, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from smtp_server import running_smtp_server
from sqlalchemy import Engine
from test_jobs import KEY, T0, calls
from waiting import eventually

from monitor.config import load_settings
from monitor.ledger.jobs import run_tick
from monitor.ledger.scheduler import (
    LEADER_LOCK_ID,
    FileLeaderLock,
    LeaderRunner,
    PostgresLeaderLock,
    leader_lock_for,
)
from monitor.records import CallRecord
from monitor.store.alerts import ledger_rows
from monitor.store.calls import insert_calls
from monitor.store.engine import make_engine, upgrade

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = make_engine(postgres_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def test_file_lock_has_one_holder_and_passes_on(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db.leader.lock"
    a, b = FileLeaderLock(path), FileLeaderLock(path)
    assert a.try_acquire() and a.try_acquire()
    assert not b.try_acquire()
    a.release()
    assert b.try_acquire()
    b.close()


def test_sqlite_engine_gets_a_file_lock_next_to_the_database(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    lock = leader_lock_for(engine)
    assert isinstance(lock, FileLeaderLock)
    with pytest.raises(ValueError, match="in-memory"):
        leader_lock_for(make_engine("sqlite:///:memory:"))


@pytest.mark.postgres
def test_advisory_lock_one_leader_of_three(pg_engine: Engine) -> None:
    locks = [PostgresLeaderLock(pg_engine) for _ in range(3)]
    try:
        assert [lock.try_acquire() for lock in locks] == [True, False, False]
        assert [lock.try_acquire() for lock in locks] == [True, False, False]
        locks[0].release()
        assert [lock.try_acquire() for lock in locks[1:]] == [True, False]
    finally:
        for lock in locks:
            lock.close()


@pytest.mark.postgres
def test_killed_leader_process_is_replaced(pg_engine: Engine) -> None:
    """The leader is a separate process holding the lock; SIGKILL it and a follower takes over."""
    url = pg_engine.url.render_as_string(hide_password=False)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from monitor.store.engine import make_engine\n"
            "from monitor.ledger.scheduler import PostgresLeaderLock\n"
            f"lock = PostgresLeaderLock(make_engine({url!r}))\n"
            "print(lock.try_acquire(), flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    follower = PostgresLeaderLock(pg_engine)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        assert not follower.try_acquire()
        holder.kill()
        holder.wait(10)
        started = time.monotonic()
        while not follower.try_acquire():
            assert time.monotonic() - started < 10, "the lock was not released"
            time.sleep(0.05)
        took = time.monotonic() - started
        assert took < 10
    finally:
        holder.kill()
        holder.communicate()
        follower.close()


@pytest.mark.postgres
def test_leader_whose_connection_dies_loses_and_a_follower_takes_over(pg_engine: Engine) -> None:
    leader, follower = PostgresLeaderLock(pg_engine), PostgresLeaderLock(pg_engine)
    try:
        assert leader.try_acquire() and not follower.try_acquire()
        terminate_lock_sessions(pg_engine)
        # pg_terminate_backend only signals the session: the lock goes when its backend exits.
        eventually(follower.try_acquire)
        assert not leader.try_acquire()  # notices its session is gone; cannot retake it
    finally:
        leader.close()
        follower.close()


@pytest.mark.postgres
def test_three_schedulers_send_one_email_per_crossing(pg_engine: Engine) -> None:
    """Three schedulers (own engine + own lock connection each) tick concurrently on one
    Postgres while usage crosses 50 then 90 %. The leader is killed midway."""
    url = pg_engine.url.render_as_string(hide_password=False)
    with running_smtp_server() as server:
        settings = load_settings(
            database_url=url,
            smtp_host=server.host,
            smtp_port=server.port,
            alert_to=("team@example.com",),
        )
        clock = {"now": T0}
        runners: list[LeaderRunner] = []
        errors: list[BaseException] = []
        engines = [make_engine(url) for _ in range(3)]

        def loop(runner: LeaderRunner, stop: threading.Event) -> None:
            while not stop.is_set():
                try:
                    runner()
                except BaseException as exc:
                    errors.append(exc)
                time.sleep(0.01)

        for i, engine in enumerate(engines):
            lock = PostgresLeaderLock(engine)
            runners.append(
                LeaderRunner(
                    lock,
                    lambda e=engine, i=i: run_tick(e, settings, clock["now"], worker=f"s{i}"),
                )
            )
        stops = [threading.Event() for _ in runners]
        threads = [
            threading.Thread(target=loop, args=(r, s)) for r, s in zip(runners, stops, strict=True)
        ]
        for t in threads:
            t.start()
        try:
            insert(pg_engine, calls(T0 - timedelta(hours=5), 26, 10_000))  # 52 %
            eventually(lambda: len(server.received) >= 1)
            leaders = [r for r in runners if r.leading]
            assert len(leaders) == 1
            # Kill the leader (its process stops, its lock session dies): another takes over.
            old = leaders[0]
            assert isinstance(old.lock, PostgresLeaderLock)
            stops[runners.index(old)].set()
            threads[runners.index(old)].join(10)
            terminate_lock_sessions(pg_engine)
            old.lock.release()
            clock["now"] = T0 + timedelta(minutes=1)
            insert(pg_engine, calls(T0 + timedelta(seconds=1), 22, 10_000))  # 96 %
            eventually(lambda: any("90%" in m.subject for m in server.received))
            time.sleep(0.5)  # several more ticks on every scheduler
        finally:
            for stop in stops:
                stop.set()
            for t in threads:
                t.join(10)
            for r in runners:
                assert isinstance(r.lock, PostgresLeaderLock)
                r.lock.close()
            for engine in engines:
                engine.dispose()
        assert errors == []
        quota_mails = sorted(m.subject for m in server.received if "daily quota" in m.subject)
        assert quota_mails == [
            "[LongCat monitor] unnamed key …9f3c passed 50% of its daily quota",
            "[LongCat monitor] unnamed key …9f3c passed 90% of its daily quota",
        ]
        assert sum(r.runs > 0 for r in runners) >= 2  # leadership changed hands
        with pg_engine.connect() as conn:
            sent = [r for r in ledger_rows(conn, KEY) if r.status == "sent"]
        assert all(r.attempts == 1 for r in sent)


def test_scheduler_command_runs_ticks_and_stops_on_sigterm(
    tmp_path: Path, recently: datetime
) -> None:
    db = tmp_path / "monitor.db"
    with running_smtp_server() as server:
        env = os.environ | {
            "MONITOR_DATABASE_URL": f"sqlite:///{db}",
            "MONITOR_SMTP_HOST": server.host,
            "MONITOR_SMTP_PORT": str(server.port),
            "MONITOR_ALERT_TO": "team@example.com",
        }
        engine = make_engine(f"sqlite:///{db}")
        upgrade(engine)
        insert(engine, calls(recently, 26, 10_000))
        engine.dispose()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from monitor.cli import main; main()",
                "scheduler",
                "--interval",
                "0.5",
            ],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            eventually(lambda: any("of its daily quota" in m.subject for m in server.received))
            time.sleep(1.2)  # a few more ticks: nothing more for the same crossing
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert "scheduler: stopped" in out
        assert "tick: rollup" in err
        assert len([m for m in server.received if "of its daily quota" in m.subject]) == 1


def insert(engine: Engine, records: list[CallRecord]) -> None:
    with engine.begin() as conn:
        insert_calls(conn, records)


def terminate_lock_sessions(engine: Engine) -> None:
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                "JOIN pg_database d ON d.oid = l.database "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = :lock_id "
                "AND d.datname = current_database() AND l.pid <> pg_backend_pid()"
            ),
            {"lock_id": LEADER_LOCK_ID},
        )
