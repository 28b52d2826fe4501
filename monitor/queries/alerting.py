"""What the Alerts page shows besides the ledger: the channels (masked), routes and silences in
force; and its one kind of write, silences (a silence is a row, like the CLI's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from monitor.alerts.notify import ChannelBook, load_channels
from monitor.alerts.rules import Silence
from monitor.config import Settings
from monitor.store import silences as store


@dataclass(frozen=True, slots=True)
class ChannelLine:
    """One channel as the page lists it: never its URL, only the masked target."""

    name: str
    target: str
    scope: str


@dataclass(frozen=True, slots=True)
class AlertSetup:
    """The channels, routes and silences in force, and what is wrong with the configuration."""

    book: ChannelBook
    channels: list[ChannelLine]
    routes: dict[str, tuple[str, ...]]
    silences: list[Silence]
    problems: tuple[str, ...]


def alert_setup(
    conn: Connection, settings: Settings, now: datetime, key_labels: dict[str, str]
) -> AlertSetup:
    book = load_channels(settings, store.key_channel_urls(conn))
    lines = [ChannelLine(c.name, c.target, "every key") for c in book.for_key("").values()]
    for key_id, own in book.by_key.items():
        label = key_labels.get(key_id, key_id[:12])
        lines += [ChannelLine(c.name, c.target, f"key {label}") for c in own]
    found = store.silences(conn, now, include_ended=False)
    return AlertSetup(book, lines, dict(book.routes.table), found, book.problems)


def silence(
    conn: Connection, rule: str, key_id: str | None, now: datetime, span: timedelta
) -> Silence:
    """Silence ``rule`` for one key (or all) from ``now`` for ``span``."""
    return store.add_silence(conn, rule=rule, key_id=key_id, starts_at=now, ends_at=now + span)


def unsilence(conn: Connection, silence_id: int, now: datetime) -> bool:
    return store.end_silence(conn, silence_id, now)
