"""``longcat-monitor export``: raw calls or the daily and hourly rollups of a range of quota days,
to CSV, JSON Lines or Parquet, streamed (constant memory), with a progress bar on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import click

from monitor.cli.common import database, fail, settings_or_exit
from monitor.cli.file_formats import BINARY_FORMATS, FILE_FORMATS, FileFormat, row_writer
from monitor.store.export import EXPORT_TABLES, ExportRange, ExportTable


@click.command("export")
@click.argument("table", type=click.Choice(EXPORT_TABLES))
@click.option("--from", "from_text", required=True, metavar="YYYY-MM-DD", help="First quota day.")
@click.option("--to", "to_text", required=True, metavar="YYYY-MM-DD", help="Last quota day.")
@click.option(
    "--format", "file_format", type=click.Choice(FILE_FORMATS), default="csv", show_default=True
)
@click.option("--key", "key_name", metavar="NAME", help="Only the calls of this named key.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default="-",
    help="File to write [default: standard output].",
)
def export(
    table: ExportTable,
    from_text: str,
    to_text: str,
    file_format: FileFormat,
    key_name: str | None,
    output: str,
) -> None:
    """Write TABLE (calls, daily or hourly) for quota days --from to --to, both included.

    Days are quota days (MONITOR_QUOTA_TZ, Beijing time by default); timestamps are written
    in UTC.
    """
    from monitor.ledger.quota_day import day_end, day_start, parse_day
    from monitor.store.export import column_kinds, count_rows, export_rows
    from monitor.store.keys import get_key_by_name

    settings = settings_or_exit()
    try:
        first_day, last_day = parse_day(from_text), parse_day(to_text)
    except ValueError as exc:
        fail(str(exc), status=2)
    if last_day < first_day:
        fail(f"--to {last_day} is before --from {first_day}", status=2)
    binary = file_format in BINARY_FORMATS
    if output == "-" and binary and sys.stdout.isatty():
        fail(f"{file_format} is binary: give -o FILE or redirect standard output", status=2)
    with database(settings) as engine, engine.connect() as conn:
        key_id = None
        if key_name is not None:
            key = get_key_by_name(conn, key_name)
            if key is None:
                fail(f"no key named {key_name!r} (see `longcat-monitor keys list`)")
            key_id = key.key_id
        span = ExportRange(
            first_day,
            last_day,
            day_start(first_day, settings.tz),
            day_end(last_day, settings.tz),
            key_id,
        )
        total = count_rows(conn, table, span) if _progress_wanted(output) else None
        with _opened(output, binary) as out, _progress(total, f"{table} → {output}") as advance:
            writer = row_writer(file_format, out, column_kinds(table))
            for batch in export_rows(conn, table, span):
                writer.write(batch)
                advance(len(batch))
            writer.close()


def _progress_wanted(output: str) -> bool:
    """A bar on standard error when it is a terminal, unless the rows go to that terminal."""
    return sys.stderr.isatty() and not (output == "-" and sys.stdout.isatty())


@contextmanager
def _progress(total: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar of ``total`` rows on standard error; nothing when ``total`` is None."""
    if total is None:
        yield lambda _rows: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


@contextmanager
def _opened(output: str, binary: bool) -> Iterator[IO[Any]]:
    """``output`` (``-``: standard output) opened for writing, text as UTF-8."""
    if output == "-":
        if binary:
            yield sys.stdout.buffer
        else:
            yield sys.stdout
        return
    if binary:
        with open(output, "wb") as file:
            yield file
    else:
        with open(output, "w", encoding="utf-8", newline="") as file:
            yield file
