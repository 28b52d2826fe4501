"""The ``longcat-monitor`` command."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from monitor.config import ConfigError, Settings, get_settings


def settings_or_exit() -> Settings:
    """The validated settings, or a one-line error and exit status 2."""
    try:
        return get_settings()
    except ConfigError as exc:
        click.echo(f"longcat-monitor: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(package_name="longcat-monitor")
def cli() -> None:
    """Usage and daily-quota monitoring for the LongCat API."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=int)
def simulate(host: str, port: int) -> None:
    """Run a local LongCat-compatible API server (both endpoints, injectable failures)."""
    from monitor.simulator.server import serve_forever

    serve_forever(host=host, port=port)


@cli.group()
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


def main() -> None:
    cli()
