"""The SQL sink: the recorder's batches written to ``api_calls`` (SQLite or Postgres)."""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Sequence
from typing import Final

from sqlalchemy import Engine

from monitor.records import CallRecord
from monitor.store.calls import insert_calls
from monitor.store.engine import (
    DATA_ERRORS,
    DataRefusedError,
    SchemaNotCurrentError,
    check_schema,
    checkpoint_sqlite,
    defer_sqlite_checkpoints,
    make_engine,
    upgrade_sqlite_on_first_use,
)

#: How often a sink whose Postgres schema is out of date looks again (after `db upgrade`).
SCHEMA_RECHECK_INTERVAL_S: Final = 60.0


#: How much of the driver's message a :class:`DataRefusedError` quotes.
MAX_CAUSE_CHARS: Final = 200

#: SQLite: the writer checkpoints the WAL when idle once this many records were written since
#: the last checkpoint (about SQLite's own 1,000-page trigger), or once the oldest of them is
#: ``IDLE_CHECKPOINT_INTERVAL_S`` old, so a quiet app syncs its few calls too.
IDLE_CHECKPOINT_RECORDS: Final = 2_000
IDLE_CHECKPOINT_INTERVAL_S: Final = 30.0


class SqlSink:
    """Writes each batch to ``api_calls`` in one transaction.

    An SQLite database is brought to the current schema on the first write (once across
    processes). A Postgres database is only checked: when its schema is missing or old, every
    write raises :class:`SchemaNotCurrentError` saying to run ``longcat-monitor db upgrade``,
    and the check is repeated every ``SCHEMA_RECHECK_INTERVAL_S`` until it passes.

    On SQLite the WAL is checkpointed in :meth:`idle`, once the recorder's queue is empty,
    rather than by whichever commit of a burst crosses SQLite's 1,000 pages.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Engine | None = None
        self._schema_ok = False
        self._schema_problem: str | None = None
        self._checked_at = 0.0
        #: records written since the last checkpoint, and when the first of them was
        self._unchecked = 0
        self._unchecked_since = 0.0
        _sinks.add(self)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url)
            defer_sqlite_checkpoints(self._engine)
        return self._engine

    def write(self, batch: Sequence[CallRecord]) -> None:
        """Write ``batch`` in one transaction; :class:`DataRefusedError` when the database
        refused a value of it (as opposed to being unreachable: then the driver's error)."""
        if not self._schema_ok:
            self._prepare_schema()
        try:
            with self.engine.begin() as conn:
                insert_calls(conn, batch)
        except DATA_ERRORS as exc:
            text = str(getattr(exc, "orig", None) or exc)
            cause = next(iter(text.splitlines()), "")[:MAX_CAUSE_CHARS]
            raise DataRefusedError(
                f"the database refused a value of {len(batch)} call records "
                f"({type(exc).__name__}: {cause})"
            ) from exc
        if not self._unchecked:
            self._unchecked_since = time.monotonic()
        self._unchecked += len(batch)

    def idle(self) -> None:
        """Checkpoint the SQLite WAL when enough was written since the last time, or long ago."""
        if self._unchecked and (
            self._unchecked >= IDLE_CHECKPOINT_RECORDS
            or time.monotonic() - self._unchecked_since >= IDLE_CHECKPOINT_INTERVAL_S
        ):
            self._unchecked = 0
            checkpoint_sqlite(self.engine)

    def _prepare_schema(self) -> None:
        now = time.monotonic()
        if self._schema_problem is None or now - self._checked_at >= SCHEMA_RECHECK_INTERVAL_S:
            self._checked_at = now
            upgrade_sqlite_on_first_use(self.engine)
            self._schema_problem = check_schema(self.engine)
            self._schema_ok = self._schema_problem is None
        if self._schema_problem is not None:
            raise SchemaNotCurrentError(self._schema_problem)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def after_fork_in_child(self) -> None:
        # The parent's pooled connections must not be used, nor closed, by the child.
        if self._engine is not None:
            self._engine.dispose(close=False)


_sinks: weakref.WeakSet[SqlSink] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sink in list(_sinks):
        sink.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
