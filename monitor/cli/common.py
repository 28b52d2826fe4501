"""What every command shares: settings, one-line failures, the database opened and closed in
one place, and the refusal of API keys on the command line."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Final, NoReturn

import click

from monitor.config import ConfigError, Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

#: Prefixes of API keys (LongCat's ``ak_``, OpenAI/Anthropic style ``sk-``) refused as arguments.
KEY_PREFIXES: Final = ("ak_", "ak-", "sk-", "sk_", "bearer ")
KEY_LIKE_MIN_CHARS: Final = 24
#: The environment variable ``keys add`` reads the API key from (else standard input).
API_KEY_ENV: Final = "LONGCAT_API_KEY"


def settings_or_exit() -> Settings:
    """The validated settings, or a one-line error and exit status 2."""
    try:
        return get_settings()
    except ConfigError as exc:
        click.echo(f"longcat-monitor: {exc}", err=True)
        sys.exit(2)


def looks_like_api_key(text: str) -> bool:
    """Whether a command-line argument is probably an API key pasted in by mistake.

    >>> looks_like_api_key("ak_2x9FQw7yU0pLm3n"), looks_like_api_key("search-team")
    (True, False)
    """
    value = text.strip()
    if value.lower().startswith(KEY_PREFIXES) and len(value) > 8:
        return True
    return (
        len(value) >= KEY_LIKE_MIN_CHARS
        and re.fullmatch(r"[A-Za-z0-9_\-.]+", value) is not None
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )


def fail(message: str, status: int = 1) -> NoReturn:
    """Print ``longcat-monitor: message`` on standard error and exit with ``status``."""
    click.echo(f"longcat-monitor: {message}", err=True)
    sys.exit(status)


def refuse_keys_in_argv(values: Sequence[str]) -> None:
    """Exit if any argument looks like an API key: argv is visible to every user of the machine."""
    if any(looks_like_api_key(value) for value in values):
        fail(
            "refusing an API key on the command line (every user of this machine can read it); "
            f"set {API_KEY_ENV} or pipe the key on standard input instead",
            status=2,
        )


@contextmanager
def database(settings: Settings) -> Iterator[Engine]:
    """The settings' database, migrated on first use for SQLite, checked for Postgres, and
    disposed of on the way out; any problem opening it is one line and exit status 1."""
    from monitor.store.engine import (
        StoreError,
        check_schema,
        make_engine,
        upgrade_sqlite_on_first_use,
    )

    try:
        engine = make_engine(settings.database_url)
        upgrade_sqlite_on_first_use(engine)
        problem = check_schema(engine)
    except StoreError as exc:
        fail(str(exc))
    if problem is not None:
        engine.dispose()
        fail(problem)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def transaction(settings: Settings) -> Iterator[Connection]:
    """One transaction on the settings' database (see :func:`database`); a refusal of the key
    store (an unknown or duplicate name) is one line and exit status 1."""
    from monitor.store.keys import KeyStoreError

    with database(settings) as engine:
        try:
            with engine.begin() as conn:
                yield conn
        except KeyStoreError as exc:
            fail(str(exc))


def describe_db(settings: Settings) -> str:
    from monitor.store.engine import describe_url

    return describe_url(settings.database_url)


def quota_day_today(settings: Settings) -> date:
    from monitor.ledger.quota_day import quota_day

    return quota_day(datetime.now(UTC), settings.tz)


def day_or_today(text: str | None, settings: Settings) -> date:
    """The quota day written ``YYYY-MM-DD``, or today's when ``text`` is ``None``; exits on a
    day that cannot be read."""
    from monitor.ledger.quota_day import parse_day

    try:
        return parse_day(text) if text is not None else quota_day_today(settings)
    except ValueError as exc:
        fail(str(exc))
