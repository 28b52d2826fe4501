"""Alert silences (``alert_silences``) and each key's own notification URLs (``keys.channels``).

A silence is kept after it ends (``unsilence`` ends it now): the Alerts page and the CLI show
what was silenced when.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from monitor.alerts.rules import Silence
from monitor.alerts.spending import subject_id
from monitor.store.models import AlertSilence, Key, Pool


def add_silence(
    conn: Connection,
    *,
    rule: str,
    key_id: str | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str | None = None,
) -> Silence:
    """Silence ``rule`` (``all``: every rule) for one key or all until ``ends_at``."""
    if ends_at <= starts_at:
        raise ValueError("a silence must end after it starts")
    new_id = conn.execute(
        insert(AlertSilence)
        .values(
            rule=rule,
            key_id=key_id,
            starts_at=starts_at,
            ends_at=ends_at,
            created_at=starts_at,
            reason=reason,
        )
        .returning(AlertSilence.id)
    ).scalar_one()
    return Silence(int(new_id), rule, key_id, starts_at, ends_at)


def silences(conn: Connection, now: datetime, *, include_ended: bool = False) -> list[Silence]:
    """The silences in force at ``now`` (with ``include_ended``, every one), newest first."""
    query = select(AlertSilence.__table__).order_by(AlertSilence.id.desc())
    if not include_ended:
        query = query.where(AlertSilence.starts_at <= now, AlertSilence.ends_at > now)
    return [Silence(s.id, s.rule, s.key_id, s.starts_at, s.ends_at) for s in conn.execute(query)]


def end_silence(conn: Connection, silence_id: int, now: datetime) -> bool:
    """End a silence now; false when there is no such silence still in force."""
    result = conn.execute(
        update(AlertSilence)
        .where(AlertSilence.id == silence_id, AlertSilence.ends_at > now)
        .values(ends_at=now)
    )
    return result.rowcount == 1


def set_key_channels(conn: Connection, key_id: str, urls: Sequence[str]) -> None:
    """Replace a registered key's own notification URLs (none: the common channels only)."""
    conn.execute(update(Key).where(Key.key_id == key_id).values(channels=list(urls) or None))


def set_pool_channels(conn: Connection, pool: str, urls: Sequence[str]) -> None:
    """Replace a pool's own notification URLs (none: the common channels only)."""
    conn.execute(update(Pool).where(Pool.name == pool).values(channels=list(urls) or None))


def key_channel_urls(conn: Connection) -> dict[str, tuple[str, ...]]:
    """Every registered key's own notification URLs, by key id, and every pool's under the
    ``key_id`` its alerts are recorded with (``pool:NAME``); those with none left out."""
    keys = conn.execute(select(Key.key_id, Key.channels).where(Key.channels.is_not(None)))
    pools = conn.execute(select(Pool.name, Pool.channels).where(Pool.channels.is_not(None)))
    urls = {key_id: tuple(found) for key_id, found in keys if found}
    urls.update({subject_id("pool", name): tuple(found) for name, found in pools if found})
    return urls
