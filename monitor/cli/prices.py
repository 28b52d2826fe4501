"""``longcat-monitor prices``: the dated price table, published and the deployment's own."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from monitor.cli.common import day_or_today, fail, settings_or_exit, transaction


@click.group()
def prices() -> None:
    """LongCat's published prices per 1M tokens, and a deployment's own (dated like quotas)."""


@prices.command("set")
@click.argument("model")
@click.option("--uncached-input", required=True, help="Price of 1M uncached input tokens.")
@click.option("--cached-input", required=True, help="Price of 1M cached input tokens.")
@click.option("--output", "output_price", required=True, help="Price of 1M output tokens.")
@click.option("--currency", help="USD or CNY [default: MONITOR_CURRENCY].")
@click.option("--from", "from_text", metavar="YYYY-MM-DD", help="First quota day [default: today].")
def prices_set(
    model: str,
    uncached_input: str,
    cached_input: str,
    output_price: str,
    currency: str | None,
    from_text: str | None,
) -> None:
    """Put prices for MODEL in force from a quota day on (earlier days keep theirs), and charge
    the rolled-up days from then on again."""
    from monitor.ledger.costing import reprice_from
    from monitor.ledger.prices import PriceError, Rates, check_currency
    from monitor.store.prices import set_price

    settings = settings_or_exit()
    try:
        rates = Rates.per_million(uncached_input, cached_input, output_price)
        chosen = check_currency(currency or settings.currency)
    except PriceError as exc:
        fail(str(exc))
    start = day_or_today(from_text, settings)
    with transaction(settings) as conn:
        set_price(conn, model.strip(), chosen, start, rates, now=datetime.now(UTC))
        days = reprice_from(conn, settings, start) if chosen == settings.currency else 0
    uncached, cached, output = rates.per_million_text()
    click.echo(
        f"{model} from {start}: {chosen} {uncached} uncached input, {cached} cached input, "
        f"{output} output per 1M tokens"
        + (f" ({days} key or pool days charged again)" if days else "")
    )


@prices.command("recompute")
@click.option("--from", "from_text", metavar="YYYY-MM-DD", required=True, help="First quota day.")
def prices_recompute(from_text: str) -> None:
    """Charge every rolled-up day from a quota day on again (after changing MONITOR_CURRENCY,
    or to check a figure): with the prices, quotas and pools as they are now."""
    from monitor.ledger.costing import reprice_from

    settings = settings_or_exit()
    start = day_or_today(from_text, settings)
    with transaction(settings) as conn:
        days = reprice_from(conn, settings, start)
    click.echo(f"{days} key or pool days from {start} charged again in {settings.currency}")


@prices.command("list")
@click.option("--currency", help="Only this currency.")
@click.option("--on", "on_text", metavar="YYYY-MM-DD", help="Mark prices in force on this day.")
def prices_list(currency: str | None, on_text: str | None) -> None:
    """Every dated price, oldest first; '*' marks the one in force (today by default)."""
    from monitor.ledger.prices import PriceError, check_currency, price_on
    from monitor.store.prices import price_table

    settings = settings_or_exit()
    try:
        wanted = None if currency is None else check_currency(currency)
    except PriceError as exc:
        fail(str(exc))
    day = day_or_today(on_text, settings)
    with transaction(settings) as conn:
        entries = price_table(conn)
    entries = [e for e in entries if wanted is None or e.currency == wanted]
    entries.sort(key=lambda e: (e.model.casefold(), e.currency, e.effective_from, e.source))
    lines = [("", "MODEL", "CUR", "FROM", "UNCACHED", "CACHED", "OUTPUT", "LIST", "SOURCE")]
    for entry in entries:
        in_force = price_on(entries, entry.model, entry.currency, day) == entry
        listed = "" if entry.list_rates is None else "/".join(entry.list_rates.per_million_text())
        lines.append(
            (
                "*" if in_force else "",
                entry.model,
                entry.currency,
                entry.effective_from.isoformat(),
                *entry.rates.per_million_text(),
                listed,
                entry.source,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    click.echo(f"prices per 1M tokens; '*' in force on {day}; costs are in {settings.currency}")
