"""``longcat-monitor keys``: register keys by fingerprint, their dated quotas and recipients."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import click

from monitor.cli.common import (
    API_KEY_ENV,
    database,
    day_or_today,
    fail,
    quota_day_today,
    refuse_keys_in_argv,
    settings_or_exit,
    transaction,
)

if TYPE_CHECKING:
    from monitor.alerts.channels import Channel

KEY_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EMAIL_PATTERN: Final = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")


def read_api_key() -> str:
    """The key from ``LONGCAT_API_KEY``, else standard input (prompted, hidden, on a terminal)."""
    raw = os.environ.get(API_KEY_ENV, "").strip()
    if not raw:
        stdin = sys.stdin
        if stdin.isatty():
            raw = click.prompt("API key", hide_input=True, err=True).strip()
        else:
            raw = stdin.readline().strip()
    if not raw:
        fail(f"no API key given: set {API_KEY_ENV} or pipe the key on standard input")
    if any(c.isspace() for c in raw):
        fail("the API key contains whitespace; give the key alone, without 'Bearer'")
    return raw


def parse_quota(text: str) -> int:
    """A quota written ``5000000``, ``5,000,000`` or ``5_000_000``; exits on anything else."""
    cleaned = text.strip().replace(",", "").replace("_", "")
    if not cleaned.lstrip("-").isdigit():
        fail(f"a quota is a whole number of tokens such as 5000000, got {text!r}")
    quota = int(cleaned)
    if quota <= 0:
        fail(f"a quota must be a positive number of tokens, got {text!r}")
    return quota


def check_emails(addresses: Sequence[str]) -> tuple[str, ...]:
    """The addresses, stripped and de-duplicated in order; exits on one that is not an e-mail."""
    result: list[str] = []
    for address in (a.strip() for a in addresses):
        if EMAIL_PATTERN.fullmatch(address) is None:
            fail(f"{address!r} is not an e-mail address (expected name@example.com)")
        if address not in result:
            result.append(address)
    return tuple(result)


def check_key_name(name: str) -> str:
    refuse_keys_in_argv([name])
    if KEY_NAME_PATTERN.fullmatch(name) is None:
        fail(
            f"{name!r} is not a usable key name: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@click.group()
def keys() -> None:
    """Register API keys (by fingerprint only), their quotas and alert recipients."""


@keys.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED, metavar="")
@click.option("--quota", "quota_text", help="Daily token quota [default: MONITOR_DEFAULT_QUOTA].")
@click.option("--email", "emails", multiple=True, help="Alert recipient (repeat for several).")
@click.option("--pool", help="Share the daily quota of this pool (see `pools add`).")
def keys_add(
    name: str,
    extra: tuple[str, ...],
    quota_text: str | None,
    emails: tuple[str, ...],
    pool: str | None,
) -> None:
    """Register a key under NAME. The key is read from $LONGCAT_API_KEY or standard input,
    never from the command line; only its fingerprint and last 4 characters are stored."""
    from monitor.capture.fingerprint import key_hint, key_id
    from monitor.store.keys import add_key
    from monitor.store.pools import set_key_pool

    refuse_keys_in_argv([name, *extra, *emails, quota_text or "", pool or ""])
    if extra:
        fail(
            f"unexpected argument {extra[0]!r}; usage: keys add NAME [--quota N] [--email ADDR]", 2
        )
    check_key_name(name)
    quota = parse_quota(quota_text) if quota_text is not None else None
    recipients = check_emails(emails)
    settings = settings_or_exit()
    raw = read_api_key()
    secret = settings.key_secret.get_secret_value() if settings.key_secret else None
    today = quota_day_today(settings)
    with transaction(settings) as conn:
        info = add_key(
            conn,
            key_id=key_id(raw, secret),
            name=name,
            hint=key_hint(raw),
            recipients=recipients,
            quota=quota,
            effective_from=today,
            now=datetime.now(UTC),
        )
        if pool is not None:
            set_key_pool(conn, info.key_id, pool)
    described = (
        f"{quota:,} tokens a day from {today}"
        if quota is not None
        else f"the default quota ({settings.default_quota:,} tokens a day)"
        if pool is None
        else f"the quota of pool {pool}"
    )
    click.echo(
        f"added {info.name} (…{info.hint}): {described}"
        + (f", alerts to {', '.join(info.recipients)}" if info.recipients else "")
    )


@keys.command("list")
@click.option(
    "--no-rollup", is_flag=True, help="Show the last rollup instead of running one first."
)
def keys_list(no_rollup: bool) -> None:
    """Every key with today's usage: registered ones, then unnamed keys seen in traffic."""
    from monitor.ledger.quota_day import time_until_reset
    from monitor.ledger.rollup import run_rollup
    from monitor.store.key_usage import key_usage_for_day

    settings = settings_or_exit()
    today = quota_day_today(settings)
    with database(settings) as engine:
        if not no_rollup:
            run_rollup(engine, settings)
        with engine.connect() as conn:
            rows = key_usage_for_day(
                conn, today, default_quota=settings.default_quota, include_idle=True
            )
    left = time_until_reset(datetime.now(UTC), settings.tz)
    hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
    click.echo(f"quota day {today} ({settings.quota_tz}), resets in {hours}h{minutes:02d}m")
    if not rows:
        click.echo("no keys registered or seen yet; add one with `longcat-monitor keys add NAME`")
        return
    table = [("NAME", "HINT", "QUOTA", "USED TODAY", "% USED")]
    for row in rows:
        table.append(
            (
                row.name or "(unnamed)",
                f"…{row.hint}" if row.hint else "?",
                f"{row.quota:,}",
                f"{row.total_tokens:,}",
                f"{100 * row.used_fraction:.1f}%",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        click.echo("  ".join(cells).rstrip())


@keys.command("set-quota", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("quota_text", metavar="N")
@click.option("--from", "from_text", metavar="YYYY-MM-DD", help="First quota day [default: today].")
def keys_set_quota(name: str, quota_text: str, from_text: str | None) -> None:
    """Give key NAME a daily quota of N tokens from a quota day on; earlier days keep theirs."""
    from monitor.ledger.costing import reprice_from
    from monitor.store.keys import quota_for, require_key, set_quota

    refuse_keys_in_argv([name, quota_text, from_text or ""])
    quota = parse_quota(quota_text)
    settings = settings_or_exit()
    start = day_or_today(from_text, settings)
    with transaction(settings) as conn:
        info = require_key(conn, name)
        before = quota_for(conn, info.key_id, start, settings.default_quota)
        set_quota(conn, info.key_id, quota, start)
        reprice_from(conn, settings, start)  # the free quota changed: so did what was paid
    click.echo(f"{name}: {quota:,} tokens a day from {start} (was {before:,})")


@keys.command("remove")
@click.argument("name")
def keys_remove(name: str) -> None:
    """Unregister key NAME (its recorded usage stays; it then shows as unnamed)."""
    from monitor.store.keys import remove_key

    refuse_keys_in_argv([name])
    settings = settings_or_exit()
    with transaction(settings) as conn:
        info = remove_key(conn, name)
    click.echo(f"removed {info.name} (…{info.hint})")


@keys.command("set-channels")
@click.argument("name")
@click.argument("urls", nargs=-1, metavar="[URL]...")
def keys_set_channels(name: str, urls: tuple[str, ...]) -> None:
    """Send key NAME's alerts to its own channels (Apprise URLs, or signed+https://… for the
    signed webhook); a URL may be named, ``ops=slack://…``. A key's channel replaces the common
    channel of the same name for this key. No URL: the common channels only.

    The URLs are kept in the database (the only place a key's own channels can live): they are
    shown masked everywhere. Give ``-`` to read them from standard input, one a line, so that
    their tokens are not in the process list.
    """
    from monitor.store.keys import require_key
    from monitor.store.silences import set_key_channels

    refuse_keys_in_argv([name])
    urls, channels = channel_urls(urls)
    settings = settings_or_exit()
    with transaction(settings) as conn:
        info = require_key(conn, name)
        set_key_channels(conn, info.key_id, urls)
    show_channels(name, channels)


def channel_urls(urls: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[Channel, ...]]:
    """The URLs given (``-``: read from standard input, one a line) and their channels; a URL
    that is no channel is one line and exit status 2."""
    from monitor.alerts.channels import ChannelError, parse_channels

    if urls == ("-",):
        urls = tuple(line.strip() for line in sys.stdin if line.strip())
    try:
        return urls, parse_channels(urls)
    except ChannelError as exc:
        fail(str(exc), 2)


def show_channels(owner: str, channels: Sequence[Channel]) -> None:
    if not channels:
        click.echo(f"{owner}: no channels of its own (the common channels only)")
    for channel in channels:
        click.echo(f"{owner}: {channel.name} → {channel.target}")
