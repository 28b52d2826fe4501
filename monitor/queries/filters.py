"""What the dashboard asks for: filters, the state of the database, and the choices it offers.

Dates are quota days (the calendar days of ``MONITOR_QUOTA_TZ``); a range is inclusive at both
ends. An empty tuple in a filter means "all".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Final

from sqlalchemy import ColumnElement, Connection, Engine, exists, select
from sqlalchemy.exc import SQLAlchemyError

from monitor.ledger.quota_day import day_end, day_start
from monitor.ledger.rollup import ROLLUP_NAME
from monitor.store import summaries
from monitor.store.engine import (
    StoreError,
    check_schema,
    describe_url,
    upgrade_sqlite_on_first_use,
)
from monitor.store.key_usage import hints_for
from monitor.store.models import ApiCall, DailyUsage, Key, RollupState

#: How far back the endpoint choices look in ``api_calls`` (an index range, not a full scan).
ENDPOINT_LOOKBACK: Final = timedelta(days=90)


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters that carry across the dashboard's pages."""

    start: date
    end: date
    key_ids: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    endpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"the range ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def last_days(cls, days: int, today: date, **choices: tuple[str, ...]) -> Filters:
        """The ``days`` quota days up to and including ``today``."""
        return cls(start=today - timedelta(days=days - 1), end=today, **choices)

    def utc_bounds(self, tz: tzinfo) -> tuple[datetime, datetime]:
        """``[start, end)`` of the range as UTC instants (the end is exclusive)."""
        return day_start(self.start, tz), day_end(self.end, tz)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def clauses(self, table: Any) -> list[ColumnElement[bool]]:
        """The WHERE clauses of the chosen keys, models and endpoints on ``table``'s columns
        (``ApiCall``, or a rollup model, which has no ``endpoint`` to filter by)."""
        clauses: list[ColumnElement[bool]] = []
        if self.key_ids:
            clauses.append(table.key_id.in_(self.key_ids))
        if self.models:
            clauses.append(table.model.in_(self.models))
        if self.endpoints:
            if not hasattr(table, "endpoint"):
                raise ValueError(f"{table.__name__} has no endpoint column to filter by")
            clauses.append(table.endpoint.in_(self.endpoints))
        return clauses


class DatabaseState(enum.Enum):
    READY = "ready"
    EMPTY = "empty"
    DOWN = "down"
    SCHEMA = "schema"


@dataclass(frozen=True, slots=True)
class DatabaseStatus:
    """Whether the dashboard can show anything, and if not, a sentence saying why."""

    state: DatabaseState
    where: str
    message: str = ""


def database_status(engine: Engine) -> DatabaseStatus:
    """READY when there is something to show; EMPTY, DOWN or SCHEMA (with a reason) otherwise.

    An SQLite database is brought to the current schema first, as every other part does.
    """
    where = describe_url(engine)
    try:
        upgrade_sqlite_on_first_use(engine)
        problem = check_schema(engine)
        if problem is not None:
            return DatabaseStatus(DatabaseState.SCHEMA, where, problem)
        with engine.connect() as conn:
            has_calls = conn.execute(select(exists().where(ApiCall.id.is_not(None)))).scalar()
            has_keys = conn.execute(select(exists().where(Key.key_id.is_not(None)))).scalar()
    except (StoreError, SQLAlchemyError, OSError) as exc:
        return DatabaseStatus(DatabaseState.DOWN, where, str(exc).splitlines()[0])
    if not has_calls and not has_keys:
        return DatabaseStatus(DatabaseState.EMPTY, where)
    return DatabaseStatus(DatabaseState.READY, where)


@dataclass(frozen=True, slots=True)
class KeyChoice:
    """A key the filters offer: registered ones by name, others as "unnamed …hint"."""

    key_id: str
    name: str | None
    hint: str | None

    @property
    def label(self) -> str:
        hint = f"…{self.hint}" if self.hint else self.key_id[:10]
        return f"{self.name} ({hint})" if self.name else f"unnamed {hint}"


def key_choices(conn: Connection) -> list[KeyChoice]:
    """Registered keys by name, then keys seen in traffic but never registered."""
    registered = [
        KeyChoice(row.key_id, row.name, row.hint)
        for row in conn.execute(select(Key.key_id, Key.name, Key.hint).order_by(Key.name))
    ]
    known = {choice.key_id for choice in registered}
    seen = set(conn.execute(select(DailyUsage.key_id).distinct()).scalars()) - known
    hints = hints_for(conn, seen)
    unnamed = [KeyChoice(key_id, None, hints.get(key_id)) for key_id in sorted(seen)]
    return registered + unnamed


def key_labels(conn: Connection) -> dict[str, str]:
    """``key_id → label`` for every key the dashboard knows."""
    return {choice.key_id: choice.label for choice in key_choices(conn)}


def model_choices(conn: Connection) -> list[str]:
    """Every model in the hourly rollup ("" is a call whose model was not recorded)."""
    return summaries.summary_models(conn)


def endpoint_choices(conn: Connection, now: datetime | None = None) -> list[str]:
    """Endpoints called in the last :data:`ENDPOINT_LOOKBACK`, as of the last rollup."""
    since = (now or datetime.now(UTC)) - ENDPOINT_LOOKBACK
    return summaries.seen_values(conn, summaries.ENDPOINT, since)


@dataclass(frozen=True, slots=True)
class RollupFreshness:
    """When the rollup last ran (``None``: never), so a page can say how current it is."""

    updated_at: datetime | None
    watermark: datetime | None


def rollup_freshness(conn: Connection, name: str = ROLLUP_NAME) -> RollupFreshness:
    row = conn.execute(
        select(RollupState.updated_at, RollupState.watermark).where(RollupState.name == name)
    ).one_or_none()
    if row is None:
        return RollupFreshness(None, None)
    return RollupFreshness(row.updated_at, row.watermark)
