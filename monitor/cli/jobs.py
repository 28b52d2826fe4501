"""``longcat-monitor tick`` and ``scheduler``: the scheduled jobs, once or until stopped."""

from __future__ import annotations

import click

from monitor.cli.common import database, describe_db, fail, settings_or_exit


@click.command()
def tick() -> None:
    """Run every scheduled job once (rollup, alert rules, sending e-mail), then exit.

    For cron and tests. Safe alongside a running scheduler: the alert ledger lets one process
    send each e-mail.
    """
    from monitor.ledger.jobs import run_tick

    settings = settings_or_exit()
    with database(settings) as engine:
        result = run_tick(engine, settings)
    click.echo(f"tick {result.now:%Y-%m-%d %H:%M:%S}Z: {result.summary()}")


@click.command()
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

    from monitor.ledger.jobs import run_tick
    from monitor.ledger.scheduler import run_scheduler

    settings = settings_or_exit()
    log = logging.getLogger("monitor.ledger.scheduler")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with database(settings) as engine:

        def job() -> None:
            log.info("tick: %s", run_tick(engine, settings).summary())

        metrics = None
        if metrics_port is not None:
            from monitor.ledger.metrics import METRICS_PATH, start_metrics_server

            try:
                metrics = start_metrics_server(engine, settings, metrics_host, metrics_port)
            except OSError as exc:
                fail(
                    f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror or exc}"
                )
            click.echo(f"scheduler: metrics on http://{metrics_host}:{metrics.port}{METRICS_PATH}")
        click.echo(f"scheduler: every {interval:g}s on {describe_db(settings)}; Ctrl-C to stop")
        try:
            run_scheduler(engine, job, interval_s=interval)
        finally:
            if metrics is not None:
                metrics.shutdown()
    click.echo("scheduler: stopped")
