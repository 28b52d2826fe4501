"""The background writer: call records in, batched database writes out, the app never waits.

Modelled on OpenTelemetry's ``BatchProcessor``. :meth:`Recorder.submit` runs on the app's
thread for every API call: it appends to a bounded queue and returns (a full queue drops the
record and counts it, logged once). A daemon thread, started on the first submit, wakes when a
batch is full or every ``flush_interval_s`` and hands batches of up to ``batch_size`` records
to a :class:`Sink`, one transaction each.

A batch the database refuses for its values (:class:`~monitor.store.engine.DataRefusedError`:
a string it cannot hold, a number out of range) is split in halves until the records at fault
are found; each of those is set aside in the spool folder's quarantine file (named in one log
line, counted in ``stats().quarantined``) and every other record is written.

When the sink fails (the database is down), the batch goes to a
:class:`~monitor.recording.spool.Spool` on local disk instead, and for ``retry_interval_s`` new
batches go straight there too, so the writer does not keep waiting on a dead database. Once a
write succeeds again, the spool is replayed (also the files that crashed or exited processes left
behind); ``event_id`` makes every replayed record land exactly once.

>>> recorder = Recorder(InMemorySink(), flush_interval_s=0.1)
>>> recorder.submit(record)  # doctest: +SKIP
>>> recorder.flush(timeout=5)
True
>>> recorder.shutdown()
True
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from monitor.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EXIT_FLUSH_TIMEOUT_S,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_QUEUE_SIZE,
    Settings,
    get_settings,
)
from monitor.recording.spool import Spool
from monitor.recording.sql_sink import SqlSink
from monitor.records import CallRecord
from monitor.safety import report_failure, swallow
from monitor.store.engine import DataRefusedError

_FLUSH_POLL_S: Final = 0.05

#: After a failed write, how long new batches go straight to the spool before the database is
#: tried again (and the spool replayed).
DEFAULT_RETRY_INTERVAL_S: Final = 5.0


class Sink(Protocol):
    """Where batches go. Every method is called from the recorder's one writer thread."""

    def write(self, batch: Sequence[CallRecord]) -> None:
        """Store the whole batch, or raise: :class:`~monitor.store.engine.DataRefusedError` when
        the batch's values were refused (the recorder then finds the records at fault), anything
        else when the database cannot be written (the recorder then spools the batch)."""

    def idle(self) -> None:
        """The queue has just been emptied: housekeeping that can wait for a quiet moment."""

    def close(self) -> None:
        """The recorder is shutting down: release connections."""


class InMemorySink:
    """Keeps every record in a list: for tests and tools where the database is not the subject."""

    def __init__(self) -> None:
        self.records: list[CallRecord] = []
        self.batches = 0

    def write(self, batch: Sequence[CallRecord]) -> None:
        self.records.extend(batch)
        self.batches += 1

    def idle(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """Counts of records since the recorder started (or since a fork, in a child)."""

    submitted: int
    written: int
    dropped: int
    failed: int
    lost: int
    queued: int
    spooled: int = 0
    replayed: int = 0
    spool_dropped: int = 0
    spool_corrupt: int = 0
    quarantined: int = 0


class QueueFullError(Exception):
    """The recorder's queue was full and a call record was dropped."""


class RecordRefusedError(Exception):
    """The database refused a call record for its values; it was set aside, not retried."""


class _FlushRequest:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class Recorder:
    """A bounded queue and a daemon writer thread in front of a :class:`Sink`.

    ``submit`` never blocks and never raises. ``flush`` waits until everything submitted
    before it was handled; ``shutdown`` flushes and stops the thread, and is idempotent.
    """

    def __init__(
        self,
        sink: Sink,
        *,
        max_queue: int | None = None,
        batch_size: int | None = None,
        flush_interval_s: float | None = None,
        exit_flush_timeout_s: float | None = None,
        spool: Spool | None = None,
        retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
    ) -> None:
        settings = _settings_or_none()
        if max_queue is None:
            max_queue = settings.queue_size if settings else DEFAULT_QUEUE_SIZE
        if batch_size is None:
            batch_size = settings.batch_size if settings else DEFAULT_BATCH_SIZE
        if flush_interval_s is None:
            flush_interval_s = settings.flush_interval_s if settings else DEFAULT_FLUSH_INTERVAL_S
        if exit_flush_timeout_s is None:
            exit_flush_timeout_s = (
                settings.exit_flush_timeout_s if settings else DEFAULT_EXIT_FLUSH_TIMEOUT_S
            )
        for name, value in (
            ("max_queue", max_queue),
            ("batch_size", batch_size),
            ("flush_interval_s", flush_interval_s),
            ("retry_interval_s", retry_interval_s),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be greater than 0, got {value!r}")
        if exit_flush_timeout_s < 0:
            raise ValueError(
                f"exit_flush_timeout_s must be 0 or more, got {exit_flush_timeout_s!r}"
            )
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.exit_flush_timeout_s = exit_flush_timeout_s
        self.sink = sink
        self.spool = spool
        self.retry_interval_s = retry_interval_s
        self._reset()
        _fork_aware.add(self)

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child (whose queue is the parent's)."""
        self._queue: deque[CallRecord | _FlushRequest] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._is_shutdown = False
        self._submitted = 0
        self._dropped = 0
        self._written = 0
        self._failed = 0
        self._lost = 0
        self._spooled = 0
        self._quarantined = 0
        #: monotonic time before which the database is not tried (it failed recently).
        self._retry_at = 0.0
        #: whether the spool (ours or an abandoned one) may hold records to replay.
        self._replay_due = False

    # --- the app's side ---------------------------------------------------------------------

    def submit(self, record: CallRecord) -> None:
        """Queue ``record`` for writing. Cheap, never blocks, never raises."""
        try:
            queue = self._queue
            with self._lock:
                if self._is_shutdown or len(queue) >= self.max_queue:
                    self._dropped += 1
                    full = not self._is_shutdown
                else:
                    queue.append(record)
                    self._submitted += 1
                    full = False
                    if self._thread is None:
                        self._start()
            if full:
                report_failure(
                    "queueing call records",
                    QueueFullError(
                        f"the queue of {self.max_queue} records is full (the database is slower "
                        "than the calls); records are being dropped and counted"
                    ),
                )
            elif len(queue) >= self.batch_size and not self._wake.is_set():
                self._wake.set()
        except Exception as exc:
            report_failure("queueing call records", exc)

    def start(self) -> None:
        """Start the writer now rather than on the first submit, so a spool left by an earlier
        run of the app is replayed even before it makes a call. Never raises."""
        with swallow("starting the call-record writer"), self._lock:
            if self._thread is None and not self._is_shutdown:
                self._start()

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything submitted before this call; True when it all was, within ``timeout``.

        "Written" means stored durably: in the database, or in the spool while the database
        is unreachable (``stats().spooled``). Records dropped because the queue was full are
        not counted against it (see ``stats``).
        """
        thread = self._thread
        if thread is None or not thread.is_alive() or threading.current_thread() is thread:
            return not any(isinstance(item, CallRecord) for item in self._queue)
        request = _FlushRequest()
        lost_before = self._lost
        self._queue.append(request)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        # Wait in slices, so a writer that stops meanwhile (shutdown) cannot strand us.
        while not request.done.wait(_FLUSH_POLL_S):
            if not thread.is_alive() or (deadline is not None and time.monotonic() >= deadline):
                return request.done.is_set() and self._lost == lost_before
        return self._lost == lost_before

    def shutdown(self, timeout: float | None = None) -> bool:
        """Write what is queued, stop the writer and close the sink. Safe to call twice.

        Returns True when the writer finished within ``timeout``. Records submitted afterwards
        are dropped (and counted).
        """
        with self._lock:
            already = self._is_shutdown
            self._is_shutdown = True
            thread = self._thread
        if already:
            return thread is None or not thread.is_alive()
        finished = True
        if thread is not None:
            self._stopping = True
            self._wake.set()
            thread.join(timeout)
            finished = not thread.is_alive()
        if finished:
            if self.spool is not None:
                with swallow("closing the spool"):
                    self.spool.close()
            with swallow("closing the call-record sink"):
                self.sink.close()
        return finished

    def stats(self) -> RecorderStats:
        spool = self.spool
        with self._lock:
            return RecorderStats(
                spooled=self._spooled,
                replayed=spool.replayed if spool is not None else 0,
                spool_dropped=spool.dropped if spool is not None else 0,
                spool_corrupt=spool.corrupt if spool is not None else 0,
                quarantined=self._quarantined,
                submitted=self._submitted,
                written=self._written,
                dropped=self._dropped,
                failed=self._failed,
                lost=self._lost,
                queued=sum(1 for item in self._queue if not isinstance(item, _FlushRequest)),
            )

    # --- the writer thread ------------------------------------------------------------------

    def _start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="longcat-monitor-writer", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        if self.spool is not None:
            with swallow("looking for a spool to replay"):
                self._replay_due = self.spool.pending()
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            stopping = self._stopping
            with swallow("writing call records"):
                self._drain()
            if self._replay_due and not stopping:
                with swallow("replaying the spool"):
                    self._replay()
            if stopping:
                return
            if not self._queue:
                self._idle()

    def _idle(self) -> None:
        if not self._database_resting():
            with swallow("checkpointing the call-record database"):
                self.sink.idle()

    def _database_resting(self) -> bool:
        return self.spool is not None and time.monotonic() < self._retry_at

    def _replay(self) -> None:
        """Replay the spool when the database may be back; stop at the first failure."""
        spool = self.spool
        if spool is None or self._database_resting():
            return
        try:
            self._replay_due = not spool.replay(self._store, self.batch_size)
        except Exception as exc:
            report_failure(f"replaying the spool ({type(exc).__name__})", exc)
            self._retry_at = time.monotonic() + self.retry_interval_s

    def _drain(self) -> None:
        queue = self._queue
        batch: list[CallRecord] = []
        while True:
            try:
                item = queue.popleft()
            except IndexError:
                break
            if isinstance(item, _FlushRequest):
                if batch:
                    self._write(batch)
                    batch = []
                item.done.set()
                continue
            batch.append(item)
            if len(batch) >= self.batch_size:
                self._write(batch)
                batch = []
        if batch:
            self._write(batch)

    def _write(self, batch: list[CallRecord]) -> None:
        if self._database_resting():
            self._handle_failed_batch(batch)
            return
        try:
            self._written += self._store(batch)
        except Exception as exc:
            report_failure(f"writing call records ({type(exc).__name__})", exc)
            self._failed += len(batch)
            self._retry_at = time.monotonic() + self.retry_interval_s
            self._handle_failed_batch(batch)

    def _store(self, batch: Sequence[CallRecord]) -> int:
        """Write ``batch``; when the database refuses its values, halve it until the records at
        fault are found and set aside. Returns how many were written; raises when the database
        cannot be written at all (the caller spools what was not)."""
        try:
            self.sink.write(batch)
        except DataRefusedError as exc:
            if len(batch) == 1:
                self._set_aside(batch[0], exc)
                return 0
            half = len(batch) // 2
            return self._store(batch[:half]) + self._store(batch[half:])
        return len(batch)

    def _set_aside(self, record: CallRecord, exc: DataRefusedError) -> None:
        """Keep a record the database refused in the quarantine file, so it is never retried
        (without a spool, or when that fails, it is counted as lost)."""
        spool = self.spool
        if spool is None:
            self._lost += 1
            report_failure("storing a call record", RecordRefusedError(f"{exc}; it was dropped"))
            return
        try:
            path = spool.quarantine(record, str(exc))
        except Exception as failure:
            report_failure(f"quarantining a call record ({type(failure).__name__})", failure)
            self._lost += 1
            return
        self._quarantined += 1
        report_failure(
            "storing a call record",
            RecordRefusedError(
                f"{exc}; the record was set aside in {path} and the others written. "
                "Inspect or delete that file"
            ),
        )

    def _handle_failed_batch(self, batch: list[CallRecord]) -> None:
        """A batch the database refused (or would have) goes to the spool, to be replayed;
        without a spool, or when the spool itself fails, it is counted as lost."""
        if self.spool is None:
            self._lost += len(batch)
            return
        try:
            self.spool.append(batch)
        except Exception as exc:
            report_failure(f"writing to the spool ({type(exc).__name__})", exc)
            self._lost += len(batch)
        else:
            self._spooled += len(batch)
            self._replay_due = True

    def _after_fork_in_child(self) -> None:
        # The queued records are the parent's to write; the child starts empty and restarts
        # its own writer on its first submit.
        shut = self._is_shutdown
        self._reset()
        self._is_shutdown = shut
        if self.spool is not None:
            self.spool.after_fork_in_child()


def _settings_or_none() -> Settings | None:
    try:
        return get_settings()
    except Exception:  # a bad setting is reported once by get_recorder(); defaults apply here
        return None


# --- the process default --------------------------------------------------------------------

_default: Recorder | None = None
_default_lock = threading.Lock()
_fork_aware: weakref.WeakSet[Recorder] = weakref.WeakSet()


def get_recorder() -> Recorder:
    """The process's recorder, writing to ``MONITOR_DATABASE_URL``; built on first use.

    A configuration error is logged once and gives a recorder that drops (and counts) records.
    """
    global _default
    recorder = _default
    if recorder is not None:
        return recorder
    with _default_lock:
        if _default is None:
            _default = _build_default()
        return _default


def _build_default() -> Recorder:
    try:
        settings = get_settings()
        spool = Spool(settings.spool_dir, settings.spool_max_bytes)
        return Recorder(_default_sink(settings), spool=spool)
    except Exception as exc:
        report_failure("reading the monitor configuration", exc)
        recorder = Recorder(
            InMemorySink(),
            max_queue=DEFAULT_QUEUE_SIZE,
            batch_size=DEFAULT_BATCH_SIZE,
            flush_interval_s=DEFAULT_FLUSH_INTERVAL_S,
            exit_flush_timeout_s=0,
        )
        recorder.shutdown()
        return recorder


def _default_sink(settings: Settings) -> Sink:
    """The SQL sink, and OTLP export behind it when it is on (OpenTelemetry is imported only
    then)."""
    sink = SqlSink(settings.database_url)
    if not settings.otlp_enabled:
        return sink
    try:
        from monitor.telemetry.sink import ExportingSink
    except ImportError as exc:
        report_failure(
            "starting OTLP export (install longcat-monitor[otel] for the OpenTelemetry SDK)", exc
        )
        return sink
    return ExportingSink(sink, settings.otlp_endpoint)


def set_recorder(recorder: Recorder | None) -> Recorder | None:
    """Make ``recorder`` the process default (``None``: build it again on next use).

    Returns the previous default, which the caller may want to ``shutdown()``.
    """
    global _default
    with _default_lock:
        previous, _default = _default, recorder
    return previous


def flush(timeout: float | None = None) -> bool:
    """Flush the process default recorder; see :meth:`Recorder.flush`."""
    recorder = _default
    return True if recorder is None else recorder.flush(timeout)


def _flush_at_exit() -> None:
    for recorder in list(_fork_aware):
        with swallow("writing call records at exit"):
            recorder.shutdown(recorder.exit_flush_timeout_s)


def _after_fork_in_child() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for recorder in list(_fork_aware):
        recorder._after_fork_in_child()


atexit.register(_flush_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
