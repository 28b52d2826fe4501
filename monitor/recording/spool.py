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

Privacy: the folder is the user's own, ``0700`` (an existing folder of this user is made so; a
link, or a folder of another user, is refused); files are created ``0600`` and opened without
following links, and only regular files of this user are adopted. Every line read back is
checked field by field and scrubbed (:mod:`monitor.scrub`) before it is written anywhere.

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
import math
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final, get_args

from monitor.records import UNSTORED_FIELDS, Api, CallRecord, UsageSource
from monitor.safety import report_failure
from monitor.scrub import scrub_record

SPOOL_SUFFIX: Final = ".jsonl"
LOCK_SUFFIX: Final = ".lock"
CORRUPT_SUFFIX: Final = ".corrupt"
#: Records the database refused for their values, one file per process (never replayed).
REFUSED_SUFFIX: Final = ".refused"
#: What a spool line holds: every stored field (a trace parent is for the live export only).
_FIELDS: Final = {f.name for f in dataclasses.fields(CallRecord)} - UNSTORED_FIELDS
_REQUIRED: Final = {"started_at", "api", "endpoint", "event_id"}
#: Files and folders: readable by their owner only; links never followed.
FILE_MODE: Final = 0o600
FOLDER_MODE: Final = 0o700
_NOFOLLOW: Final = os.O_NOFOLLOW | os.O_CLOEXEC
#: The largest integer a record's count fields may hold (a Postgres ``integer``).
_MAX_INT: Final = 2**31 - 1
_MAX_EVENT_ID_CHARS: Final = 64


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
    """The record of one spool line, checked field by field and scrubbed;
    :class:`CorruptSpoolLineError` if it is not one."""
    try:
        values = json.loads(line)
        if not isinstance(values, dict) or not values.keys() >= _REQUIRED:
            raise ValueError("missing fields")
        known = {k: v for k, v in values.items() if k in _FIELDS}
        for name, value in known.items():
            _check_field(name, value)
        known["started_at"] = datetime.fromisoformat(known["started_at"])
        if known["started_at"].tzinfo is None:
            raise ValueError("started_at has no time zone")
        return scrub_record(CallRecord(**known))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise CorruptSpoolLineError(str(exc)[:200]) from None


_TEXT: Final = frozenset(
    {
        "key_id",
        "key_hint",
        "model",
        "error_type",
        "error_code",
        "error_message",
        "request_id",
        "client",
    }
)
_COUNTS: Final = frozenset(
    {"status_code", "attempt", *(f for f in _FIELDS if f.endswith("_tokens"))}
)
_TIMES: Final = frozenset({"retry_after_s", "latency_ms", "ttft_ms"})
_CHOICES: Final[dict[str, tuple[str, ...]]] = {
    "api": get_args(Api),
    "usage_source": get_args(UsageSource),
}


def _check_field(name: str, value: Any) -> None:
    """Raise ValueError unless ``value`` is something a CallRecord's ``name`` may hold."""
    if name in _CHOICES:
        ok = value in _CHOICES[name]
    elif name in _TEXT:
        ok = value is None or isinstance(value, str)
    elif name in _COUNTS:
        ok = (value is None and name != "attempt") or (
            type(value) is int and 0 <= value <= _MAX_INT
        )
    elif name in _TIMES:
        ok = value is None or (type(value) in (int, float) and math.isfinite(value) and value >= 0)
    elif name == "stream":
        ok = type(value) is bool
    elif name == "labels":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    elif name == "event_id":
        ok = isinstance(value, str) and 0 < len(value) <= _MAX_EVENT_ID_CHARS and value.isalnum()
    else:  # started_at, endpoint, method, source
        ok = isinstance(value, str)
    if not ok:
        raise ValueError(f"{name} holds {type(value).__name__} {str(value)[:40]!r}")


# --- files: private, never through a link, only this user's -------------------------------


def private_folder(directory: Path, *, create: bool) -> None:
    """Make sure ``directory`` is a folder of this user's that only they can enter.

    Created ``0700`` when missing (with ``create``); an existing one of this user's is made
    ``0700``. A link, or a folder of another user, raises :class:`SpoolError`.
    """
    try:
        if create:
            directory.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory, FOLDER_MODE)
        info = os.lstat(directory)
    except OSError as exc:
        raise SpoolError(
            f"cannot use the spool directory {directory} ({exc.strerror}); set "
            "MONITOR_SPOOL_PATH to a writable directory"
        ) from exc
    if not stat.S_ISDIR(info.st_mode):
        raise SpoolError(
            f"the spool directory {directory} is not a directory (a link or a file); set "
            "MONITOR_SPOOL_PATH to a directory of your own"
        )
    if info.st_uid != os.geteuid():
        raise SpoolError(
            f"the spool directory {directory} is owned by user {info.st_uid}, not by this user "
            f"({os.geteuid()}); set MONITOR_SPOOL_PATH to a directory of your own"
        )
    if stat.S_IMODE(info.st_mode) != FOLDER_MODE:
        os.chmod(directory, FOLDER_MODE)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of ``path`` (created ``0600``), never through a link."""
    return os.open(path, flags | _NOFOLLOW, FILE_MODE)


def _open_own(path: Path, mode: str) -> IO[bytes]:
    """``path`` opened without following a link, if it is a regular file of this user's."""
    flags = {"rb": os.O_RDONLY, "r+b": os.O_RDWR, "ab": os.O_WRONLY | os.O_APPEND | os.O_CREAT}
    fd = open_private(path, flags[mode])
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)
        raise PermissionError(f"{path} is not a regular file of this user's")
    return os.fdopen(fd, mode)


def _is_own_file(path: Path) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()


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
        with _open_own(self.path, "ab") as file:
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
        private_folder(self.directory, create=True)
        try:
            fd = open_private(self.directory / (self._name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT)
        except OSError as exc:
            raise SpoolError(
                f"cannot use the spool directory {self.directory} ({exc.strerror}); set "
                "MONITOR_SPOOL_PATH to a writable directory"
            ) from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd

    @property
    def quarantine_path(self) -> Path:
        """Where this process keeps the records the database refused (never replayed)."""
        return self.directory / (self._name + REFUSED_SUFFIX)

    def quarantine(self, record: CallRecord, reason: str) -> Path:
        """Keep ``record``, refused by the database for ``reason``, out of the way; returns the
        file's path."""
        private_folder(self.directory, create=True)
        line = json.loads(encode_record(record))
        line["refused_because"] = reason
        data = json.dumps(line, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
        path = self.quarantine_path
        with _open_own(path, "ab") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        return path

    # --- replaying ------------------------------------------------------------------------

    def replay(self, write: Callable[[Sequence[CallRecord]], object], batch_size: int) -> bool:
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
        self, path: Path, write: Callable[[Sequence[CallRecord]], object], batch_size: int
    ) -> None:
        lock_path = path.with_suffix(LOCK_SUFFIX)
        try:
            fd = open_private(lock_path, os.O_RDWR | os.O_CREAT)
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
        """Abandoned spool files: regular files of this user's, in a folder of this user's."""
        try:
            private_folder(self.directory, create=False)
            entries = list(self.directory.iterdir())
        except SpoolError as exc:
            if self.directory.exists():
                report_failure("looking for a spool to replay", exc)
            return
        except OSError:
            return
        own = self.path
        for entry in sorted(entries):
            if (
                entry.suffix == SPOOL_SUFFIX
                and entry != own
                and _is_own_file(entry)
                and _is_abandoned(entry)
            ):
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
        fd = os.open(lock_path, os.O_RDONLY | _NOFOLLOW)
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
    tmp.unlink(missing_ok=True)
    with (
        _open_own(path, "rb") as source,
        os.fdopen(open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as target,
    ):
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
    write: Callable[[Sequence[CallRecord]], object],
    batch_size: int,
    spool: Spool,
) -> _Rewritten:
    """Replay ``path`` batch by batch; returns what is left of it (size 0: all written)."""
    written_bytes = 0
    batch: list[CallRecord] = []
    batch_bytes = 0
    try:
        with _open_own(path, "rb") as source:
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
    with _open_own(path, "r+b") as file:
        file.truncate(0)
        os.fsync(file.fileno())
    return _Rewritten(0, 0)


def _quarantine(path: Path, number: int, line: bytes, exc: Exception) -> None:
    """Keep a line that is not a record in ``<file>.corrupt`` and say so (once per process)."""
    corrupt = path.with_name(path.name + CORRUPT_SUFFIX)
    with _open_own(corrupt, "ab") as file:
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
