"""Many writers: several processes recording at once into one database, and a forking server.

``LCM_WRITERS`` × ``LCM_RECORDS_PER_WRITER`` records (default 8 × 5,000) go straight to each
process's recorder, plus ``LCM_REAL_CALLS`` instrumented calls per process through the
simulator. Every row lands exactly once and no process sees "database is locked".
"""

from __future__ import annotations

import os
import time

import pytest
from processes import app_env, finish, start_app
from test_outage import rows_and_distinct

from monitor.simulator import RunningSimulator

WRITERS = int(os.environ.get("LCM_WRITERS", "8"))
PER_WRITER = int(os.environ.get("LCM_RECORDS_PER_WRITER", "5000"))
REAL_CALLS = int(os.environ.get("LCM_REAL_CALLS", "25"))


@pytest.mark.slow
def test_many_processes_write_every_row_exactly_once(
    database_url: str, sim: RunningSimulator
) -> None:
    env = app_env(database_url, flush_interval_s="0.2")
    start_at = time.time() + 3  # all start together, once their imports are done
    processes = [
        start_app("many", sim.base_url, PER_WRITER, REAL_CALLS, start_at, env=env)
        for _ in range(WRITERS)
    ]
    results = [finish(p) for p in processes]
    elapsed = time.time() - start_at
    expected = WRITERS * (PER_WRITER + REAL_CALLS)
    for result in results:
        assert result.returncode == 0, result.stderr
        assert "locked" not in result.stderr.lower(), result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert result.figures["ok"] is True
        assert (result.figures["lost"], result.figures["dropped"]) == (0, 0)
    assert rows_and_distinct(database_url) == (expected, expected)
    print(
        f"{database_url.split(':')[0]}: {expected:,} rows from {WRITERS} processes in "
        f"{elapsed:.1f}s ({expected / elapsed:,.0f} rows/s)"
    )


def test_a_fork_after_instrument_loses_and_doubles_nothing(
    sqlite_url: str, sim: RunningSimulator
) -> None:
    workers, per_worker = 4, 50
    done = finish(start_app("fork", sim.base_url, workers, per_worker, env=app_env(sqlite_url)))
    assert done.returncode == 0, done.stderr
    assert done.figures["statuses"] == [0] * workers
    assert done.figures["ok"] is True
    expected = 10 + 10 + workers * per_worker
    assert rows_and_distinct(sqlite_url) == (expected, expected)
