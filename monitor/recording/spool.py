"""The local spool: call records the database refused, kept on disk until it answers again.

One JSON line per record, appended to a file of this process's own
(``<spool dir>/<pid>-<random>.jsonl``) next to a lock file it holds for as long as it lives
(``fcntl.flock``). Several processes therefore never write the same file, and a file whose lock
can be taken belongs to a process that has exited or crashed: any process writing to the same
database adopts it and replays it.

Durability: each appended batch is written with one ``write`` and ``fsync``-ed before
:meth:`Spool.append` returns, so a record that reached the spool survives a crash of the
process or the machine. A line cut short by a crash is detected on replay and skipped.

Bound: this process's file never grows past ``max_bytes``. Past it the oldest records are
dropped (the file is rewritten without them) and counted in :attr:`Spool.dropped`.

Replays are safe to repeat: ``api_calls`` ignores an ``event_id`` it already holds, so a record
replayed twice (say, the process died between the insert and the truncation) lands once.

Only the recorder's writer thread uses a :class:`Spool`; it is not thread-safe by itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from monitor.records import CallRecord
from monitor.safety import report_failure

SPOOL_SUFFIX: Final = ".jsonl"
LOCK_SUFFIX: Final = ".lock"
CORRUPT_SUFFIX: Final = ".corrupt"
_FIELDS: Final = {f.name for f in dataclasses.fields(CallRecord)}
_REQUIRED: Final = {"started_at", "api", "endpoint", "event_id"}


class SpoolError(Exception):
    """The spool directory cannot be used; the message names the path and what to fix."""


class CorruptSpoolLineError(ValueError):
    """A spool line that is not a call record (cut short by a crash, or edited by hand)."""


# --- the line format ----------------------------------------------------------------------


def encode_record(record: CallRecord) -> bytes:
    """One JSON line (with its newline) holding every field of ``record``."""
    values = {name: getattr(record, name) for name in _FIELDS}
    values["started_at"] = record.started_at.isoformat()
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


def decode_record(line: bytes) -> CallRecord:
    """The record of one spool line; :class:`CorruptSpoolLineError` if it is not one."""
    try:
        values = json.loads(line)
        if not isinstance(values, dict) or not values.keys() >= _REQUIRED:
            raise ValueError("missing fields")
        known = {k: v for k, v in values.items() if k in _FIELDS}
        known["started_at"] = datetime.fromisoformat(known["started_at"])
        if known["started_at"].tzinfo is None:
            raise ValueError("started_at has no time zone")
        if not isinstance(known["event_id"], str) or not isinstance(known.get("labels", {}), dict):
            raise ValueError("wrong field types")
        return CallRecord(**known)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise CorruptSpoolLineError(str(exc)) from None


# --- one process's file, and the files other processes left -------------------------------


class Spool:
    """This process's bounded spool file in ``directory``, and adoption of abandoned ones.

    >>> spool = Spool(Path("/tmp/spool-example"), max_bytes=1_000_000)  # doctest: +SKIP
    >>> spool.append(batch)  # doctest: +SKIP
    >>> spool.replay(sink.write, batch_size=500)  # doctest: +SKIP
    True
    """

    def __init__(self, directory: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be greater than 0, got {max_bytes!r}")
        self.directory = directory
        self.max_bytes = max_bytes
        self.dropped = 0
        self.corrupt = 0
        self.replayed = 0
        self._reset()

    def _reset(self) -> None:
        self._name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._lock_fd: int | None = None
        self._size = 0

    @property
    def path(self) -> Path:
        """This process's spool file (created on the first append)."""
        return self.directory / (self._name + SPOOL_SUFFIX)

    @property
    def size(self) -> int:
        """Bytes in this process's spool file."""
        return self._size

    def pending(self) -> bool:
        """Whether this process's file, or an abandoned one, may hold records to replay."""
        return self._size > 0 or any(True for _ in self._orphans())

    # --- writing --------------------------------------------------------------------------

    def append(self, batch: Sequence[CallRecord]) -> None:
        """Add ``batch`` to the file and fsync it; drops (and counts) the oldest past the cap."""
        self._claim()
        lines = [encode_record(record) for record in batch]
        incoming = sum(map(len, lines))
        while lines and incoming > self.max_bytes:  # a batch larger than the whole spool
            incoming -= len(lines.pop(0))
            self.dropped += 1
        if self._size + incoming > self.max_bytes:
            self._drop_oldest(self._size + incoming - self.max_bytes)
        data = b"".join(lines)
        with open(self.path, "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        self._size += len(data)

    def _drop_oldest(self, excess: int) -> None:
        kept = _rewrite_without_head(self.path, excess)
        self.dropped += kept.skipped_lines
        self._size = kept.size

    def _claim(self) -> None:
        """Create the directory and take this process's lock, once."""
        if self._lock_fd is not None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / (self._name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise SpoolError(
                f"cannot use the spool directory {self.directory} ({exc.strerror}); set "
                "MONITOR_SPOOL_PATH to a writable directory"
            ) from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    # --- replaying ------------------------------------------------------------------------

    def replay(self, write: Callable[[Sequence[CallRecord]], None], batch_size: int) -> bool:
        """Write this process's records, then abandoned files', in batches, through ``write``.

        Returns True when everything was written. When ``write`` raises, what it had accepted
        is taken out of the file, the rest stays, and the exception propagates.
        """
        if self._size:
            try:
                _replay_file(self.path, write, batch_size, self)
            finally:
                self._size = _size_of(self.path)
        for orphan in list(self._orphans()):
            self._replay_orphan(orphan, write, batch_size)
        return self._size == 0

    def _replay_orphan(
        self, path: Path, write: Callable[[Sequence[CallRecord]], None], batch_size: int
    ) -> None:
        lock_path = path.with_suffix(LOCK_SUFFIX)
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT)
        except OSError:
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    return  # its process is alive, or another one is replaying it
                raise
            if path.exists():
                done = _replay_file(path, write, batch_size, self)
                if done.size:
                    return
                path.unlink(missing_ok=True)
            lock_path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def _orphans(self) -> Iterator[Path]:
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return
        own = self.path
        for entry in sorted(entries):
            if entry.suffix == SPOOL_SUFFIX and entry != own and _is_abandoned(entry):
                yield entry

    def close(self) -> None:
        """Release the lock; an empty file and its lock are removed, a non-empty one stays."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        if self._size == 0:
            self.path.unlink(missing_ok=True)
            (self.directory / (self._name + LOCK_SUFFIX)).unlink(missing_ok=True)
        os.close(fd)

    def after_fork_in_child(self) -> None:
        """A forked child writes a file of its own; the parent's stays the parent's."""
        if self._lock_fd is not None:
            # Closing our copy does not release the parent's lock (it holds its own copy).
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
        self._reset()


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _is_abandoned(path: Path) -> bool:
    """Whether no live process holds the lock of spool file ``path`` (a quick, racy look)."""
    lock_path = path.with_suffix(LOCK_SUFFIX)
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


@dataclasses.dataclass(frozen=True, slots=True)
class _Rewritten:
    size: int
    skipped_lines: int


def _rewrite_without_head(path: Path, skip_bytes: int) -> _Rewritten:
    """Rewrite ``path`` without its first whole lines totalling at least ``skip_bytes``."""
    skipped = 0
    skipped_lines = 0
    tmp = path.with_name(path.name + ".tmp")
    if not path.exists():
        return _Rewritten(0, 0)
    with open(path, "rb") as source, open(tmp, "wb") as target:
        for line in source:
            if skipped < skip_bytes:
                skipped += len(line)
                skipped_lines += 1
                continue
            target.write(line)
        target.flush()
        os.fsync(target.fileno())
        size = target.tell()
    os.replace(tmp, path)
    return _Rewritten(size, skipped_lines)


def _replay_file(
    path: Path,
    write: Callable[[Sequence[CallRecord]], None],
    batch_size: int,
    spool: Spool,
) -> _Rewritten:
    """Replay ``path`` batch by batch; returns what is left of it (size 0: all written)."""
    written_bytes = 0
    batch: list[CallRecord] = []
    batch_bytes = 0
    try:
        with open(path, "rb") as source:
            for number, line in enumerate(source, start=1):
                try:
                    batch.append(decode_record(line))
                except CorruptSpoolLineError as exc:
                    _quarantine(path, number, line, exc)
                    spool.corrupt += 1
                batch_bytes += len(line)
                if len(batch) >= batch_size:
                    write(batch)
                    spool.replayed += len(batch)
                    written_bytes += batch_bytes
                    batch, batch_bytes = [], 0
            if batch:
                write(batch)
                spool.replayed += len(batch)
            written_bytes += batch_bytes
    except FileNotFoundError:
        return _Rewritten(0, 0)
    except Exception:
        if written_bytes:
            _rewrite_without_head(path, written_bytes)
        raise
    with open(path, "r+b") as file:
        file.truncate(0)
        os.fsync(file.fileno())
    return _Rewritten(0, 0)


def _quarantine(path: Path, number: int, line: bytes, exc: Exception) -> None:
    """Keep a line that is not a record in ``<file>.corrupt`` and say so (once per process)."""
    corrupt = path.with_name(path.name + CORRUPT_SUFFIX)
    with open(corrupt, "ab") as file:
        file.write(line if line.endswith(b"\n") else line + b"\n")
    report_failure(
        "replaying the spool (corrupt line)",
        CorruptSpoolLineError(
            f"{path} line {number} is not a call record ({exc}); it was moved to {corrupt} "
            "and the rest replayed. Inspect or delete that file"
        ),
    )


def spool_files(directory: Path) -> list[Path]:
    """The spool files in ``directory`` (any process's), oldest name first."""
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == SPOOL_SUFFIX)
    except OSError:
        return []


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as file:
            return sum(1 for _ in file)
    except OSError:
        return 0
