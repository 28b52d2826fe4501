"""The commands that run a server: ``simulate``, ``gateway``, ``dashboard`` and ``demo``."""

from __future__ import annotations

import os
import sys

import click

from monitor.cli.common import describe_db, fail, settings_or_exit
from monitor.config import ConfigError, Settings, is_loopback


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8900, show_default=True, type=int)
def simulate(host: str, port: int) -> None:
    """Run a local LongCat-compatible API server (both endpoints, injectable failures)."""
    from monitor.simulator.server import serve_forever

    serve_forever(host=host, port=port)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(1, 65535))
@click.option("--upstream", help="Where to forward [default: MONITOR_UPSTREAM_URL].")
def gateway(host: str, port: int, upstream: str | None) -> None:
    """Run the monitoring gateway: a local proxy for /openai/... and /anthropic/... that records
    every call (point Claude Code, curl or any SDK at it instead of api.longcat.chat)."""
    from monitor.config import load_settings
    from monitor.gateway.server import serve_forever

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
        f"{describe_db(settings)}; access token {'required' if settings.gateway_token else 'off'}"
        f"; quota guard {guard}"
    )
    serve_forever(settings, host=host, port=port)


@click.command()
@click.option(
    "--host",
    envvar="STREAMLIT_SERVER_ADDRESS",
    default="127.0.0.1",
    show_default=True,
    show_envvar=True,
    help="Address to listen on.",
)
@click.option(
    "--port",
    envvar="STREAMLIT_SERVER_PORT",
    default=8501,
    show_default=True,
    show_envvar=True,
    type=click.IntRange(1, 65535),
)
def dashboard(host: str, port: int) -> None:
    """Serve the team dashboard (Streamlit) on MONITOR_DATABASE_URL."""
    from monitor.cli.dashboard_server import dashboard_url, streamlit_argv

    _refuse_public_dashboard(host, settings_or_exit())
    argv = streamlit_argv(host, port)
    click.echo(f"longcat-monitor: dashboard on {dashboard_url(host, port)}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)  # become the server: signals and exit status are its own


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard address.")
@click.option("--port", default=8501, show_default=True, type=int, help="Dashboard port.")
@click.option("--seed-only", is_flag=True, help="Write the demo data, run the jobs, and exit.")
def demo(host: str, port: int, seed_only: bool) -> None:
    """See it work with no API key: simulator, real SDK traffic, alerts, dashboard."""
    from monitor.cli.demo import run_demo

    _refuse_public_dashboard(host, settings_or_exit())
    run_demo(host=host, port=port, seed_only=seed_only)


def _refuse_public_dashboard(host: str, settings: Settings) -> None:
    """Stop unless the dashboard on ``host`` is either local or behind its password: it shows
    every key's usage and can send e-mail through the team's SMTP login."""
    if not is_loopback(host) and settings.dashboard_password is None:
        fail(
            f"refusing to serve the dashboard on {host}, reachable from other machines, without "
            "a password: set MONITOR_DASHBOARD_PASSWORD, or keep the default --host 127.0.0.1",
            status=2,
        )
