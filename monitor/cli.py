"""The ``longcat-monitor`` command."""

from __future__ import annotations

import sys

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


def main() -> None:
    cli()
