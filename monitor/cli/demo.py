"""``longcat-monitor demo``: the whole product working on made-up traffic, in one command.

No API key, nothing to install: it starts the LongCat simulator and an SMTP catcher in this
process, registers three demo keys, writes two weeks of history, drives today's calls through
the real SDKs (instrumented), runs the rollup and alert jobs (the e-mails land in the catcher and
are printed), then serves the dashboard and keeps a trickle of calls going until Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import FrameType
from typing import Any, Final

import click
from sqlalchemy import Connection, Engine

from monitor.cli.demo_traffic import (
    DEMO_KEYS,
    DEMO_PACK_TOKENS,
    DEMO_POOL,
    DEMO_TOP_UP,
    HISTORY_DAYS,
    SdkTraffic,
    history,
)
from monitor.config import Settings, get_settings, load_settings
from monitor.ledger.quota_day import quota_day

#: Seconds between the live phase's rounds of calls and scheduler ticks.
LIVE_INTERVAL_S: Final = 20.0
DEMO_ALERT_TO: Final = "team@example.com"
DEMO_ALERT_FROM: Final = "longcat-monitor-demo@localhost"
#: History inserted before the rollup watermark needs a rollup that looks back this far.
HISTORY_LOOKBACK: Final = timedelta(days=15)


@dataclass
class Inbox:
    """What the demo's SMTP catcher received, printed as it arrives."""

    messages: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import email
        import email.policy

        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        to = ", ".join(envelope.rcpt_tos)
        with self.lock:
            self.messages.append((to, str(message["Subject"])))
        click.echo(f"  ✉  e-mail to {to}: {message['Subject']}")
        return "250 OK"


@contextmanager
def smtp_catcher(inbox: Inbox) -> Iterator[int]:
    """An SMTP server on a free loopback port that accepts everything; yields its port."""
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def prepare_database(settings: Settings) -> Engine:
    """The settings' database at the current schema (SQLite upgraded; Postgres upgraded too,
    since the demo is usually run on a scratch database)."""
    from monitor.store.engine import check_schema, make_engine, upgrade

    engine = make_engine(settings.database_url)
    if check_schema(engine) is not None:
        upgrade(engine)
    return engine


def register_keys(engine: Engine, settings: Settings, now: datetime) -> None:
    """Register the named demo keys with their quotas (keys already there are left alone), the
    pool two of them share, a top-up and a token pack."""
    from monitor.store.keys import add_key, get_key

    today = quota_day(now, settings.tz)
    with engine.begin() as conn:
        for key in DEMO_KEYS:
            if key.name is None or get_key(conn, key.key_id) is not None:
                continue
            add_key(
                conn,
                key_id=key.key_id,
                name=key.name,
                hint=key.hint,
                recipients=key.recipients,
                quota=key.quota,
                effective_from=today - timedelta(days=30),
                now=now,
            )
        _buy_credit(conn, settings, today, now)


def _buy_credit(conn: Connection, settings: Settings, today: date, now: datetime) -> None:
    """The demo pool of keys, a top-up a month ago and a token pack that expires soon (once)."""
    from monitor.ledger.prices import parse_amount, to_nanos
    from monitor.store.billing import add_pack, add_top_up, top_ups
    from monitor.store.keys import get_key_by_name
    from monitor.store.pools import add_pool, list_pools, set_key_pool

    pool, quota, members = DEMO_POOL
    if any(p.name == pool for p in list_pools(conn)):
        return
    add_pool(conn, pool, quota=quota, effective_from=today - timedelta(days=30), now=now)
    for name in members:
        found = get_key_by_name(conn, name)
        if found is not None:
            set_key_pool(conn, found.key_id, pool)
    if not top_ups(conn, settings.currency):
        amount = to_nanos(parse_amount(DEMO_TOP_UP))
        add_top_up(conn, today - timedelta(days=30), amount, settings.currency, now=now)
    add_pack(
        conn, DEMO_PACK_TOKENS, today - timedelta(days=5), today + timedelta(days=2), pool, now=now
    )


def write_history(
    engine: Engine, settings: Settings, now: datetime, days: int = HISTORY_DAYS
) -> int:
    from monitor.store.calls import insert_calls

    records = history(now, settings.tz, days=days)
    with engine.begin() as conn:
        insert_calls(conn, records)
    return len(records)


def drive(calls: list[tuple[str, Callable[[], object]]]) -> None:
    with click.progressbar(
        calls,
        label="Calling the simulator through the real openai and anthropic SDKs",
        item_show_func=lambda item: item[0] if item else None,
        width=24,
    ) as bar:
        for _, call in bar:
            call()


def seed(engine: Engine, settings: Settings, traffic: SdkTraffic) -> None:
    """Keys, history, today's SDK calls, then one rollup-and-alerts pass."""
    import monitor
    from monitor.ledger.jobs import run_tick
    from monitor.ledger.rollup import run_rollup

    now = datetime.now(UTC)
    register_keys(engine, settings, now)
    click.echo("Registered keys search (5M/day), support-bot (500k/day), nightly-reports (40k/day)")
    written = write_history(engine, settings, now)
    click.echo(f"Wrote {written:,} calls of made-up history ({DEMO_KEYS[0].name} and others)")
    drive(traffic.seed_plan())
    monitor.flush(timeout=30)
    run_rollup(engine, settings, late_window=HISTORY_LOOKBACK)
    result = run_tick(engine, settings)
    click.echo(f"Scheduler pass: {result.summary()}")
    click.echo(_money_line(engine, settings))


def _money_line(engine: Engine, settings: Settings) -> str:
    """Today's estimated cost and the balance left, in one line."""
    from monitor.ledger.billing import run_out_day
    from monitor.ledger.prices import format_money
    from monitor.store.billing import balance_of, day_charges

    today = quota_day(datetime.now(UTC), settings.tz)
    with engine.connect() as conn:
        cost = sum(c.cost for c in day_charges(conn, today).values())
        state = balance_of(conn, settings.currency)
    money = settings.currency
    ends = run_out_day(state, today)
    return (
        f"Cost today (estimate): {format_money(cost, money, places=4)}; balance "
        f"{format_money(state.balance, money, places=2)} of the "
        f"{format_money(state.last_top_up or 0, money, places=2)} topped up"
        + (f", runs out around {ends}" if ends else "")
    )


def run_demo(*, host: str, port: int, seed_only: bool) -> None:
    """The ``demo`` command (see the module docstring)."""
    from monitor.cli.dashboard_server import (
        dashboard_url,
        start_dashboard,
        stop_process_group,
        wait_until_serving,
    )
    from monitor.gateway import RunningGateway
    from monitor.ledger.jobs import run_tick
    from monitor.simulator import RunningSimulator, SimulatorOptions
    from monitor.store.engine import describe_url

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    base = get_settings()
    url = dashboard_url(host, port)
    inbox = Inbox()
    dashboard: subprocess.Popen[bytes] | None = None
    engine: Engine | None = None
    traffic: SdkTraffic | None = None
    try:
        with (
            smtp_catcher(inbox) as smtp_port,
            RunningSimulator(SimulatorOptions(latency_ms=40, chunk_interval_ms=4)) as sim,
            RunningGateway(load_settings(upstream_url=sim.base_url)) as gateway,
        ):
            settings = load_settings(
                smtp_host="127.0.0.1",
                smtp_port=smtp_port,
                smtp_user=None,
                smtp_password=None,
                smtp_starttls=False,
                alert_from=DEMO_ALERT_FROM,
                alert_to=(DEMO_ALERT_TO,),
                dashboard_url=url.rstrip("/"),
            )
            click.echo(f"Database: {describe_url(base.database_url)}")
            click.echo(f"LongCat simulator: {sim.base_url}; SMTP catcher: 127.0.0.1:{smtp_port}")
            click.echo(f"Gateway (for tools that cannot be wrapped): {gateway.base_url}")
            engine = prepare_database(settings)
            traffic = SdkTraffic(sim.openai_base_url, sim.anthropic_base_url, gateway.base_url)
            seed(engine, settings, traffic)
            if seed_only:
                return
            env = {
                **os.environ,
                "MONITOR_DATABASE_URL": settings.database_url,
                "MONITOR_SMTP_HOST": "127.0.0.1",
                "MONITOR_SMTP_PORT": str(smtp_port),
                "MONITOR_SMTP_STARTTLS": "false",
                "MONITOR_ALERT_TO": DEMO_ALERT_TO,
                "MONITOR_ALERT_FROM": DEMO_ALERT_FROM,
            }
            for name in ("MONITOR_SMTP_USER", "MONITOR_SMTP_PASSWORD"):
                env.pop(name, None)
            dashboard = start_dashboard(host, port, env)
            if not wait_until_serving(url, dashboard):
                raise click.ClickException(f"the dashboard did not start on {url}")
            click.echo("")
            click.secho(f"Dashboard: {url}", bold=True)
            click.echo("Calls keep coming every 20 s; press Ctrl-C to stop everything.")
            import monitor

            round_ = 0
            while True:
                threading.Event().wait(LIVE_INTERVAL_S)
                for call in traffic.trickle(round_):
                    call()
                monitor.flush(timeout=10)
                run_tick(engine, settings)
                round_ += 1
    except KeyboardInterrupt:
        click.echo("\nStopping…")
    finally:
        if dashboard is not None:
            stop_process_group(dashboard)
        if traffic is not None:
            traffic.close()
        from monitor.recording.recorder import flush

        flush(timeout=10)
        if engine is not None:
            engine.dispose()
        signal.signal(signal.SIGTERM, previous)
    if dashboard is not None:
        click.echo("Stopped.")
