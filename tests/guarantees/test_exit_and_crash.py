"""Exit and crash: a normal exit writes what is queued in bounded time; after SIGKILL a restart
replays the spool; SIGKILL loses at most what was submitted since the last write."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from processes import app_env, run_app
from test_outage import rows_and_distinct

from monitor.recording.spool import spool_files

#: A Postgres URL on a port nothing listens on: every write is refused at once.
DOWN_URL = "postgresql://postgres@127.0.0.1:9/lcm"


def test_normal_exit_writes_what_is_queued_within_the_exit_timeout(sqlite_url: str) -> None:
    env = app_env(sqlite_url, flush_interval_s="60", exit_flush_timeout_s="10", queue_size="50000")
    started = time.time()
    done = run_app("submit-and-exit", 5_000, env=env)
    assert done.returncode == 0, done.stderr
    exit_took = time.time() - done.figures["exit_started"]
    assert exit_took < 10
    assert rows_and_distinct(sqlite_url) == (5_000, 5_000)
    print(f"exit wrote 5,000 queued records in {exit_took:.2f}s ({time.time() - started:.1f}s run)")


def test_exit_with_the_database_down_is_bounded_and_spools(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    env = app_env(DOWN_URL, flush_interval_s="60", exit_flush_timeout_s="3", spool_path=str(spool))
    done = run_app("submit-and-exit", 1000, env=env)
    assert done.returncode == 0, done.stderr
    assert time.time() - done.figures["exit_started"] < 4
    assert done.stderr.count("failed (") == 1  # the outage is logged once, not per batch
    assert spool_files(spool)  # kept for the next start


def test_a_restart_replays_the_spool_of_a_killed_process(sqlite_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    killed = run_app("spool-then-kill", 3000, env=app_env(DOWN_URL, spool_path=str(spool)))
    assert killed.returncode == -signal.SIGKILL
    assert killed.figures["spooled"] == 3000 and killed.figures["lost"] == 0
    assert len(spool_files(spool)) == 1

    restarted = run_app(
        "restart", 3000, env=app_env(sqlite_url, spool_path=str(spool), flush_interval_s="0.1")
    )
    assert restarted.returncode == 0, restarted.stderr
    assert restarted.figures["replayed"] == 3000
    assert rows_and_distinct(sqlite_url) == (3000, 3000)
    assert spool_files(spool) == []


def test_sigkill_loses_at_most_what_was_submitted_since_the_last_write(sqlite_url: str) -> None:
    env = app_env(sqlite_url, flush_interval_s="1")
    done = run_app("write-then-kill", 2000, 500, env=env)
    assert done.returncode == -signal.SIGKILL
    rows, distinct = rows_and_distinct(sqlite_url)
    assert rows == distinct
    assert 2000 <= rows <= 2500
