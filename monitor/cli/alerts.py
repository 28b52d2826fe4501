"""``longcat-monitor alerts``: silences, the channels and routes in force, a test message."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

import click

from monitor.cli.common import (
    database,
    fail,
    refuse_keys_in_argv,
    settings_or_exit,
    transaction,
)

DURATION: Final = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?")
MAX_SILENCE: Final = timedelta(days=30)


def parse_duration(text: str) -> timedelta:
    """``4h``, ``90m``, ``1d``, ``2h30m``; exits on anything else.

    >>> parse_duration("2h30m")
    datetime.timedelta(seconds=9000)
    """
    match = DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        fail(f"{text!r} is not a duration (expected e.g. 30m, 4h, 1d or 2h30m)", 2)
    days, hours, minutes = (int(g or 0) for g in match.groups())
    span = timedelta(days=days, hours=hours, minutes=minutes)
    if span <= timedelta(0) or span > MAX_SILENCE:
        fail(f"a silence lasts from 1 minute to {MAX_SILENCE.days} days, got {text!r}", 2)
    return span


@click.group()
def alerts() -> None:
    """Silence alerts, see the channels and routes in force, send a test message."""


@alerts.command("silence")
@click.argument("rule")
@click.option("--key", "key_name", help="Only this registered key [default: every key].")
@click.option("--for", "span_text", required=True, help="How long: 30m, 4h, 1d…")
@click.option("--reason", help="Shown beside the silence.")
def alerts_silence(rule: str, key_name: str | None, span_text: str, reason: str | None) -> None:
    """Silence RULE (quota, burn_rate, error_rate, auth_burst, latency, ttft, digest… or all).

    Silenced alerts are still decided and recorded in the ledger, as ``silenced``.
    """
    from monitor.alerts.routing import RULE_ALIASES
    from monitor.ledger.quota_day import quota_day
    from monitor.store.keys import require_key
    from monitor.store.silences import add_silence

    refuse_keys_in_argv([rule, key_name or "", reason or ""])
    span = parse_duration(span_text)
    rule = RULE_ALIASES.get(rule.strip().lower(), rule.strip().lower())
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", rule):
        fail(f"{rule!r} is not a rule name", 2)
    settings = settings_or_exit()
    now = datetime.now(UTC)
    with transaction(settings) as conn:
        key_id = require_key(conn, key_name).key_id if key_name else None
        silence = add_silence(
            conn, rule=rule, key_id=key_id, starts_at=now, ends_at=now + span, reason=reason
        )
    until = silence.ends_at.astimezone(settings.tz)
    click.echo(
        f"silence #{silence.id}: {rule} for {key_name or 'every key'} until "
        f"{until:%Y-%m-%d %H:%M} ({settings.quota_tz}; quota day now {quota_day(now, settings.tz)})"
    )


@alerts.command("silences")
@click.option("--all", "show_all", is_flag=True, help="Include the silences that have ended.")
def alerts_silences(show_all: bool) -> None:
    """The silences in force (with --all, every one)."""
    from monitor.store.keys import list_keys
    from monitor.store.silences import silences

    settings = settings_or_exit()
    now = datetime.now(UTC)
    with database(settings) as engine, engine.connect() as conn:
        found = silences(conn, now, include_ended=show_all)
        names = {k.key_id: k.name for k in list_keys(conn)}
    if not found:
        click.echo("no silence in force" if not show_all else "no silence yet")
        return
    for s in found:
        ends = s.ends_at.astimezone(settings.tz)
        state = "in force" if s.starts_at <= now < s.ends_at else "ended"
        who = names.get(s.key_id, s.key_id[:12]) if s.key_id else "every key"
        click.echo(f"#{s.id}  {s.rule:<12} {who:<20} until {ends:%Y-%m-%d %H:%M}  {state}")


@alerts.command("unsilence")
@click.argument("silence_id", type=int)
def alerts_unsilence(silence_id: int) -> None:
    """End silence SILENCE_ID now."""
    from monitor.store.silences import end_silence

    settings = settings_or_exit()
    with transaction(settings) as conn:
        ended = end_silence(conn, silence_id, datetime.now(UTC))
    if not ended:
        fail(f"no silence #{silence_id} in force (see `longcat-monitor alerts silences`)")
    click.echo(f"silence #{silence_id} ended")


@alerts.command("channels")
def alerts_channels() -> None:
    """The channels (URLs masked), each key's own, the routes, and any configuration problem."""
    from monitor.alerts.notify import load_channels
    from monitor.store.keys import list_keys
    from monitor.store.silences import key_channel_urls

    settings = settings_or_exit()
    with database(settings) as engine, engine.connect() as conn:
        book = load_channels(settings, key_channel_urls(conn))
        names = {k.key_id: k.name for k in list_keys(conn)}
    for channel in book.for_key("").values():
        click.echo(f"{channel.name:<14} {channel.target}")
    for key_id, own in book.by_key.items():
        for channel in own:
            click.echo(f"{channel.name:<14} {channel.target}  (key {names.get(key_id, key_id)})")
    if book.routes.table:
        click.echo(
            "routes: " + "; ".join(f"{k}={','.join(v)}" for k, v in book.routes.table.items())
        )
    else:
        click.echo("routes: none (every alert goes to every channel)")
    for problem in book.problems:
        click.echo(f"problem: {problem}", err=True)
    if book.problems:
        raise SystemExit(1)


@alerts.command("test")
@click.argument("channel")
@click.option("--key", "key_name", help="Use this key's own channels.")
def alerts_test(channel: str, key_name: str | None) -> None:
    """Send a test message to CHANNEL (a configured channel's name, as `alerts channels` lists)."""
    from monitor.alerts.delivery import DeliveryError
    from monitor.alerts.notify import ChannelSender, load_channels, sample_message
    from monitor.store.keys import require_key
    from monitor.store.silences import key_channel_urls

    settings = settings_or_exit()
    with transaction(settings) as conn:
        key_id = require_key(conn, key_name).key_id if key_name else ""
        book = load_channels(settings, key_channel_urls(conn))
    found = book.for_key(key_id).get(channel)
    if found is None:
        fail(f"no channel {channel!r} (configured: {', '.join(book.for_key(key_id))})")
    try:
        ChannelSender(lambda: settings)(found, sample_message(settings, datetime.now(UTC)))
    except DeliveryError as exc:
        fail(f"not sent: {exc}")
    click.echo(f"test message accepted by {found.name} ({found.target})")
