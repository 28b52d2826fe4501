"""How far each rollup has read ``api_calls``: the ``rollup_state`` rows.

A watermark only ever moves forward (:func:`advance_watermark`), so of two runs at once the one
that read the older state cannot move it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, cast

from sqlalchemy import Connection, Table, case, select

from monitor.store.dialect import dialect_insert
from monitor.store.models import RollupState

rollup_state: Final = cast(Table, RollupState.__table__)


def get_watermark(conn: Connection, name: str) -> datetime | None:
    """How far the rollup called ``name`` has read ``api_calls``; ``None`` before its first run."""
    watermark: datetime | None = conn.execute(
        select(RollupState.watermark).where(RollupState.name == name)
    ).scalar_one_or_none()
    return watermark


def get_watermarks(conn: Connection, *names: str) -> dict[str, datetime | None]:
    """:func:`get_watermark` of each of ``names``, in one query."""
    found = dict(
        conn.execute(
            select(RollupState.name, RollupState.watermark).where(RollupState.name.in_(names))
        ).all()
    )
    return {name: found.get(name) for name in names}


def set_watermark(conn: Connection, name: str, watermark: datetime, *, now: datetime) -> None:
    """Record the watermark of the rollup called ``name``."""
    statement = dialect_insert(conn, rollup_state).values(
        name=name, watermark=watermark, updated_at=now
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["name"],
            set_={"watermark": statement.excluded.watermark, "updated_at": now},
        )
    )


def advance_watermark(conn: Connection, name: str, watermark: datetime, *, now: datetime) -> None:
    """Like :func:`set_watermark`, but never moving a stored watermark back: of two runs at
    once, the one that read the older state may commit last."""
    statement = dialect_insert(conn, rollup_state).values(
        name=name, watermark=watermark, updated_at=now
    )
    stored, offered = rollup_state.c.watermark, statement.excluded.watermark
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["name"],
            set_={
                "watermark": case((stored > offered, stored), else_=offered),
                "updated_at": statement.excluded.updated_at,
            },
        )
    )
