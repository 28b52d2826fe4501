"""The SQLite writer keeps up while the app's own thread is busy in Python.

sqlite3 lets go of the GIL around each statement it steps; written a row per step, every row
then waited for the busy thread's switch interval, and the queue overflowed at a few hundred
records a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from monitor.recorder import Recorder, SqlSink
from monitor.records import CallRecord

BUSY_SECONDS = 3.0
#: A busy app's pace, whatever the speed of the machine running the test.
CALLS_PER_SECOND = 3_000


def test_the_writer_keeps_up_beside_a_busy_app_thread(
    sqlite_url: str, make_call_record: Callable[..., CallRecord]
) -> None:
    sink = SqlSink(sqlite_url)
    recorder = Recorder(sink, max_queue=5_000, batch_size=2_000, flush_interval_s=0.05)
    submitted = 0
    start = time.monotonic()
    deadline = start + BUSY_SECONDS
    while time.monotonic() < deadline:  # CALLS_PER_SECOND, never sleeping
        recorder.submit(make_call_record())
        submitted += 1
        next_call = start + submitted / CALLS_PER_SECOND
        while time.monotonic() < next_call:  # the app's own work between calls
            sum(i * i for i in range(200))
    try:
        assert recorder.flush(30)
        stats = recorder.stats()
    finally:
        recorder.shutdown(10)
        sink.close()
    assert submitted > 5_000  # more than the queue holds: the writer had to keep pace
    assert stats.dropped == 0
    assert stats.written == submitted
