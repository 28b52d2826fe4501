"""``longcat-monitor billing``: top-ups and token packs, and the estimated balance they leave."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from monitor.cli.common import day_or_today, fail, quota_day_today, settings_or_exit, transaction
from monitor.cli.keys import parse_quota


@click.group()
def billing() -> None:
    """What the team bought: balance top-ups and token packs (an estimate; the platform's bill
    is authoritative)."""


@billing.command("top-up")
@click.argument("amount")
@click.option("--currency", help="USD or CNY [default: MONITOR_CURRENCY].")
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="Quota day [default: today].")
def billing_top_up(amount: str, currency: str | None, date_text: str | None) -> None:
    """Record AMOUNT added to the prepaid balance."""
    from monitor.ledger.prices import (
        PriceError,
        check_currency,
        format_money,
        parse_amount,
        to_nanos,
    )
    from monitor.store.billing import add_top_up

    settings = settings_or_exit()
    try:
        nanos = to_nanos(parse_amount(amount, what="a top-up"))
        chosen = check_currency(currency or settings.currency)
    except PriceError as exc:
        fail(str(exc))
    if nanos <= 0:
        fail(f"a top-up must be more than 0, got {amount!r}")
    day = day_or_today(date_text, settings)
    with transaction(settings) as conn:
        add_top_up(conn, day, nanos, chosen, now=datetime.now(UTC))
    click.echo(f"topped up {format_money(nanos, chosen)} on {day}")


@billing.group("pack")
def pack() -> None:
    """Token packs: tokens bought that expire."""


@pack.command("add")
@click.argument("tokens_text", metavar="TOKENS")
@click.option("--expires", "expires_text", required=True, metavar="YYYY-MM-DD", help="Last day.")
@click.option("--pool", help="Only for this pool (or key name) [default: any key].")
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="Bought on [default: today].")
def pack_add(tokens_text: str, expires_text: str, pool: str | None, date_text: str | None) -> None:
    """Record a pack of TOKENS usable until the end of quota day --expires."""
    from monitor.store.billing import add_pack

    tokens = parse_quota(tokens_text)
    settings = settings_or_exit()
    bought, expires = day_or_today(date_text, settings), day_or_today(expires_text, settings)
    if expires < bought:
        fail(f"a pack cannot expire ({expires}) before it is bought ({bought})")
    with transaction(settings) as conn:
        number = add_pack(conn, tokens, bought, expires, pool, now=datetime.now(UTC))
    click.echo(
        f"pack {number}: {tokens:,} tokens until {expires}" + (f" for {pool}" if pool else "")
    )


@billing.command("status")
def billing_status() -> None:
    """The estimated balance left, the packs left, and the day the balance runs out."""
    from monitor.ledger.billing import run_out_day
    from monitor.ledger.prices import format_money
    from monitor.store.billing import balance_of

    settings = settings_or_exit()
    today = quota_day_today(settings)
    with transaction(settings) as conn:
        state = balance_of(conn, settings.currency)
    money = settings.currency
    if state.last_top_up is None:
        click.echo("no top-up recorded; add one with `longcat-monitor billing top-up AMOUNT`")
    else:
        ends = run_out_day(state, today)
        click.echo(
            f"balance {format_money(state.balance, money, places=2)} "
            f"({state.percent_left:.0f}% of the last top-up of "
            f"{format_money(state.last_top_up, money, places=2)}); "
            + (f"runs out around {ends}" if ends else "no recent spending")
        )
    for left in state.packs:
        p = left.pack
        status = "expired" if p.expires < today else f"until {p.expires}"
        click.echo(
            f"pack {p.id}: {left.tokens_left:,} of {p.tokens:,} tokens left, {status}"
            + (f" ({p.pool})" if p.pool else "")
        )
    click.echo("an estimate from published prices; the platform's bill is authoritative")
