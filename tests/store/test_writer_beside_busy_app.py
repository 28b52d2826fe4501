"""The SQLite writer keeps up while the app's own thread is busy in Python.

sqlite3 lets go of the GIL around each statement it steps; written a row per step, every row
then waited for the busy thread's switch interval, and the writer managed a few dozen records a
second (167 of 9,000 here). Written many rows per statement it keeps pace.

The queue holds every record the app submits, so the figure is how far the writer lags, not
whether a one-second stall of a shared machine (a disk flush, a neighbour's burst) happened to
overflow a small queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from monitor.recording.recorder import Recorder
from monitor.recording.sql_sink import SqlSink
from monitor.records import CallRecord

BUSY_SECONDS = 3.0
#: A busy app's pace, whatever the speed of the machine running the test.
CALLS_PER_SECOND = 3_000
#: The least share of the submitted records the writer must have written when the app stops:
#: a quarter, a dozen times what the row-per-statement writer managed; on a quiet two-core
#: machine this one has written all but the last batch (over 95%).
LEAST_SHARE_WRITTEN = 0.25


def test_the_writer_keeps_up_beside_a_busy_app_thread(
    sqlite_url: str, make_call_record: Callable[..., CallRecord]
) -> None:
    sink = SqlSink(sqlite_url)
    sink.write([make_call_record()])  # the schema is checked before the clock starts
    recorder = Recorder(sink, max_queue=20_000, batch_size=2_000, flush_interval_s=0.05)
    submitted = 0
    try:
        start = time.monotonic()
        deadline = start + BUSY_SECONDS
        while time.monotonic() < deadline:  # CALLS_PER_SECOND, never sleeping
            recorder.submit(make_call_record())
            submitted += 1
            next_call = start + submitted / CALLS_PER_SECOND
            while time.monotonic() < next_call:  # the app's own work between calls
                sum(i * i for i in range(200))
        written_while_busy = recorder.stats().written
        assert recorder.flush(30)
        stats = recorder.stats()
    finally:
        recorder.shutdown(10)
        sink.close()
    assert written_while_busy >= LEAST_SHARE_WRITTEN * submitted, (
        f"{written_while_busy:,} of {submitted:,} written while the app was busy"
    )
    assert stats.dropped == 0
    assert stats.written == submitted
