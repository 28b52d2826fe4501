"""The ``longcat-monitor`` command."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Final, NoReturn

import click

from monitor.config import ConfigError, Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine


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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(1, 65535))
@click.option("--upstream", help="Where to forward [default: MONITOR_UPSTREAM_URL].")
def gateway(host: str, port: int, upstream: str | None) -> None:
    """Run the monitoring gateway: a local proxy for /openai/... and /anthropic/... that records
    every call (point Claude Code, curl or any SDK at it instead of api.longcat.chat)."""
    from monitor.config import load_settings
    from monitor.gateway.server import is_loopback, serve_forever

    settings = settings_or_exit()
    if upstream is not None:
        try:
            settings = load_settings(upstream_url=upstream)
        except ConfigError as exc:
            fail(str(exc).replace("MONITOR_UPSTREAM_URL", "--upstream"), status=2)
    if not is_loopback(host) and settings.gateway_token is None:
        fail(
            f"refusing to listen on {host}, reachable from other machines, without an access "
            "token: set MONITOR_GATEWAY_TOKEN (clients then send it as x-gateway-token), "
            "or keep the default --host 127.0.0.1",
            status=2,
        )
    guard = "on" if settings.gateway_quota_guard else "off"
    click.echo(
        f"gateway: http://{host}:{port} → {settings.upstream_url}; recording to "
        f"{_describe_db(settings)}; access token {'required' if settings.gateway_token else 'off'}"
        f"; quota guard {guard}"
    )
    serve_forever(settings, host=host, port=port)


# --- keys ---------------------------------------------------------------------------------

#: The environment variable ``keys add`` reads the API key from (else standard input).
API_KEY_ENV: Final = "LONGCAT_API_KEY"
KEY_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EMAIL_PATTERN: Final = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+")
#: Prefixes of API keys (LongCat's ``ak_``, OpenAI/Anthropic style ``sk-``) refused as arguments.
KEY_PREFIXES: Final = ("ak_", "ak-", "sk-", "sk_", "bearer ")
KEY_LIKE_MIN_CHARS: Final = 24


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


def open_engine(settings: Settings) -> Engine:
    """The settings' database, migrated on first use for SQLite, checked for Postgres."""
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
        fail(problem)
    return engine


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


def quota_day_today(settings: Settings) -> date:
    from monitor.quota_day import quota_day

    return quota_day(datetime.now(UTC), settings.tz)


@cli.group()
def keys() -> None:
    """Register API keys (by fingerprint only), their quotas and alert recipients."""


@keys.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("extra", nargs=-1, type=click.UNPROCESSED, metavar="")
@click.option("--quota", "quota_text", help="Daily token quota [default: MONITOR_DEFAULT_QUOTA].")
@click.option("--email", "emails", multiple=True, help="Alert recipient (repeat for several).")
def keys_add(
    name: str, extra: tuple[str, ...], quota_text: str | None, emails: tuple[str, ...]
) -> None:
    """Register a key under NAME. The key is read from $LONGCAT_API_KEY or standard input,
    never from the command line; only its fingerprint and last 4 characters are stored."""
    from monitor.fingerprint import key_hint, key_id
    from monitor.store.keys import KeyStoreError, add_key

    refuse_keys_in_argv([name, *extra, *emails, quota_text or ""])
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
    engine = open_engine(settings)
    today = quota_day_today(settings)
    try:
        with engine.begin() as conn:
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
    except KeyStoreError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    described = (
        f"{quota:,} tokens a day from {today}"
        if quota is not None
        else f"the default quota ({settings.default_quota:,} tokens a day)"
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
    from monitor.quota_day import time_until_reset
    from monitor.rollup import run_rollup
    from monitor.store.usage import key_usage_for_day

    settings = settings_or_exit()
    engine = open_engine(settings)
    today = quota_day_today(settings)
    try:
        if not no_rollup:
            run_rollup(engine, settings)
        with engine.connect() as conn:
            rows = key_usage_for_day(
                conn, today, default_quota=settings.default_quota, include_idle=True
            )
    finally:
        engine.dispose()
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
    from monitor.quota_day import parse_day
    from monitor.store.keys import KeyStoreError, quota_for, require_key, set_quota

    refuse_keys_in_argv([name, quota_text, from_text or ""])
    quota = parse_quota(quota_text)
    settings = settings_or_exit()
    try:
        start = parse_day(from_text) if from_text is not None else quota_day_today(settings)
    except ValueError as exc:
        fail(str(exc))
    engine = open_engine(settings)
    try:
        with engine.begin() as conn:
            info = require_key(conn, name)
            before = quota_for(conn, info.key_id, start, settings.default_quota)
            set_quota(conn, info.key_id, quota, start)
    except KeyStoreError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    click.echo(f"{name}: {quota:,} tokens a day from {start} (was {before:,})")


@keys.command("remove")
@click.argument("name")
def keys_remove(name: str) -> None:
    """Unregister key NAME (its recorded usage stays; it then shows as unnamed)."""
    from monitor.store.keys import KeyStoreError, remove_key

    refuse_keys_in_argv([name])
    settings = settings_or_exit()
    engine = open_engine(settings)
    try:
        with engine.begin() as conn:
            info = remove_key(conn, name)
    except KeyStoreError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    click.echo(f"removed {info.name} (…{info.hint})")


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


# --- scheduled jobs -----------------------------------------------------------------------


@cli.command()
def tick() -> None:
    """Run every scheduled job once (rollup, alert rules, sending e-mail), then exit.

    For cron and tests. Safe alongside a running scheduler: the alert ledger lets one process
    send each e-mail.
    """
    from monitor.jobs import run_tick

    settings = settings_or_exit()
    engine = open_engine(settings)
    try:
        result = run_tick(engine, settings)
    finally:
        engine.dispose()
    click.echo(f"tick {result.now:%Y-%m-%d %H:%M:%S}Z: {result.summary()}")


@cli.command()
@click.option(
    "--interval",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds between passes.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port at /metrics (off when not given).",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port."
)
def scheduler(interval: float, metrics_port: int | None, metrics_host: str) -> None:
    """Run every scheduled job each interval until stopped (SIGINT or SIGTERM).

    Several schedulers on one database elect one leader (a Postgres advisory lock, or a file lock
    next to an SQLite database); the others wait to take over. Every one of them can serve
    metrics: the figures come from the database.
    """
    import logging

    from monitor.jobs import run_tick
    from monitor.scheduler import run_scheduler

    settings = settings_or_exit()
    engine = open_engine(settings)
    log = logging.getLogger("monitor.scheduler")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def job() -> None:
        log.info("tick: %s", run_tick(engine, settings).summary())

    metrics = None
    if metrics_port is not None:
        from monitor.metrics import METRICS_PATH, start_metrics_server

        try:
            metrics = start_metrics_server(engine, settings, metrics_host, metrics_port)
        except OSError as exc:
            engine.dispose()
            fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror or exc}")
        click.echo(f"scheduler: metrics on http://{metrics_host}:{metrics.port}{METRICS_PATH}")
    click.echo(f"scheduler: every {interval:g}s on {_describe_db(settings)}; Ctrl-C to stop")
    try:
        run_scheduler(engine, job, interval_s=interval)
    finally:
        if metrics is not None:
            metrics.shutdown()
        engine.dispose()
    click.echo("scheduler: stopped")


def _describe_db(settings: Settings) -> str:
    from monitor.store.engine import describe_url

    return describe_url(settings.database_url)


# --- dashboard and demo --------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8501, show_default=True, type=int)
def dashboard(host: str, port: int) -> None:
    """Serve the team dashboard (Streamlit) on MONITOR_DATABASE_URL."""
    from monitor.dashboard_server import dashboard_url, streamlit_argv

    settings_or_exit()
    argv = streamlit_argv(host, port)
    click.echo(f"longcat-monitor: dashboard on {dashboard_url(host, port)}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # become the server: signals and exit status are its own


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard address.")
@click.option("--port", default=8501, show_default=True, type=int, help="Dashboard port.")
@click.option("--seed-only", is_flag=True, help="Write the demo data, run the jobs, and exit.")
def demo(host: str, port: int, seed_only: bool) -> None:
    """See it work with no API key: simulator, real SDK traffic, alerts, dashboard."""
    from monitor.demo import run_demo

    settings_or_exit()
    run_demo(host=host, port=port, seed_only=seed_only)


def main() -> None:
    cli()
