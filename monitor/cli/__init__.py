"""The ``longcat-monitor`` command: one module per command group."""

from __future__ import annotations

import click

from monitor.cli.alerts import alerts
from monitor.cli.billing import billing
from monitor.cli.common import looks_like_api_key
from monitor.cli.db import db
from monitor.cli.export import export
from monitor.cli.jobs import scheduler, tick
from monitor.cli.keys import keys
from monitor.cli.pools import pools
from monitor.cli.prices import prices
from monitor.cli.services import dashboard, demo, gateway, simulate

__all__ = ["cli", "looks_like_api_key", "main"]


@click.group()
@click.version_option(package_name="longcat-monitor")
def cli() -> None:
    """Usage and daily-quota monitoring for the LongCat API."""


for command in (
    simulate,
    gateway,
    keys,
    pools,
    prices,
    billing,
    alerts,
    db,
    tick,
    scheduler,
    dashboard,
    demo,
    export,
):
    cli.add_command(command)


def main() -> None:
    cli()
