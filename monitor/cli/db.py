"""``longcat-monitor db``: the database schema (Alembic migrations)."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from monitor.cli.common import settings_or_exit


@click.group()
def db() -> None:
    """The database schema at MONITOR_DATABASE_URL (Alembic migrations)."""


def _database_error(exc: Exception) -> NoReturn:
    click.echo(f"longcat-monitor: MONITOR_DATABASE_URL: {exc}", err=True)
    sys.exit(1)


@db.command("upgrade")
def db_upgrade() -> None:
    """Bring the database to the latest schema (safe to run again, and from several hosts)."""
    from alembic.util import CommandError

    from monitor.store.engine import (
        StoreError,
        describe_url,
        make_engine,
        revisions_between,
        upgrade,
    )

    settings = settings_or_exit()
    where = describe_url(settings.database_url)
    try:
        engine = make_engine(settings.database_url)
        try:
            before, after = upgrade(engine)
        finally:
            engine.dispose()
    except (StoreError, CommandError) as exc:
        _database_error(exc)
    applied = revisions_between(before, after)
    if not applied:
        click.echo(f"{where}: already at the latest revision, {after}")
    else:
        click.echo(
            f"{where}: upgraded from {before or 'an empty database'} to {after} "
            f"(applied {', '.join(applied)})"
        )


@db.command("current")
def db_current() -> None:
    """Show the database's schema revision and whether it is the latest."""
    from monitor.store.engine import (
        StoreError,
        current_revision,
        describe_url,
        head_revision,
        make_engine,
    )

    settings = settings_or_exit()
    where = describe_url(settings.database_url)
    try:
        engine = make_engine(settings.database_url)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
    except StoreError as exc:
        _database_error(exc)
    head = head_revision()
    if current == head:
        click.echo(f"{where}: {current} (latest)")
    else:
        click.echo(
            f"{where}: {current or 'empty'}; latest is {head}: run `longcat-monitor db upgrade`"
        )
