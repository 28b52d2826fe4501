"""``longcat-monitor pools``: keys sharing one free daily quota, and a pool's daily budget."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from monitor.cli.common import (
    day_or_today,
    fail,
    quota_day_today,
    refuse_keys_in_argv,
    settings_or_exit,
    transaction,
)
from monitor.cli.keys import channel_urls, check_key_name, parse_quota, show_channels


@click.group()
def pools() -> None:
    """Pools: keys sharing one daily quota (a key in no pool is a pool of one)."""


@pools.command("add")
@click.argument("name")
@click.option("--quota", "quota_text", help="Daily token quota [default: MONITOR_DEFAULT_QUOTA].")
@click.option("--key", "key_names", multiple=True, help="A registered key to put in the pool.")
def pools_add(name: str, quota_text: str | None, key_names: tuple[str, ...]) -> None:
    """Create pool NAME, optionally with its quota and keys (or use `keys add NAME --pool`)."""
    from monitor.ledger.costing import reprice_from
    from monitor.store.keys import require_key
    from monitor.store.pools import add_pool, set_key_pool

    check_key_name(name)
    refuse_keys_in_argv(key_names)
    quota = parse_quota(quota_text) if quota_text is not None else None
    settings = settings_or_exit()
    today = quota_day_today(settings)
    with transaction(settings) as conn:
        add_pool(conn, name, quota=quota, effective_from=today, now=datetime.now(UTC))
        for key_name in key_names:
            set_key_pool(conn, require_key(conn, key_name).key_id, name)
        if key_names:
            reprice_from(conn, settings, today)
    quota_text = f"{quota:,}" if quota is not None else f"the default {settings.default_quota:,}"
    click.echo(
        f"added pool {name}: {quota_text} tokens a day"
        + (f", keys {', '.join(key_names)}" if key_names else "")
    )


@pools.command("add-key")
@click.argument("name")
@click.argument("key_name")
def pools_add_key(name: str, key_name: str) -> None:
    """Move registered key KEY_NAME into pool NAME (from today on)."""
    from monitor.ledger.costing import reprice_from
    from monitor.store.keys import require_key
    from monitor.store.pools import set_key_pool

    refuse_keys_in_argv([name, key_name])
    settings = settings_or_exit()
    with transaction(settings) as conn:
        set_key_pool(conn, require_key(conn, key_name).key_id, name)
        reprice_from(conn, settings, quota_day_today(settings))
    click.echo(f"{key_name} now shares the quota of pool {name}")


@pools.command("set-quota")
@click.argument("name")
@click.argument("quota_text", metavar="N")
@click.option("--from", "from_text", metavar="YYYY-MM-DD", help="First quota day [default: today].")
def pools_set_quota(name: str, quota_text: str, from_text: str | None) -> None:
    """Give pool NAME a daily quota of N tokens from a quota day on; earlier days keep theirs."""
    from monitor.ledger.costing import reprice_from
    from monitor.store.pools import require_pool, set_pool_quota

    quota = parse_quota(quota_text)
    settings = settings_or_exit()
    start = day_or_today(from_text, settings)
    with transaction(settings) as conn:
        require_pool(conn, name)
        set_pool_quota(conn, name, quota, start)
        reprice_from(conn, settings, start)
    click.echo(f"pool {name}: {quota:,} tokens a day from {start}")


@pools.command("set-budget")
@click.argument("name")
@click.argument("amount", required=False)
@click.option("--none", "remove", is_flag=True, help="Remove the budget.")
def pools_set_budget(name: str, amount: str | None, remove: bool) -> None:
    """Alert once a day when pool NAME spends more than AMOUNT (MONITOR_CURRENCY) in a day."""
    from monitor.ledger.prices import PriceError, format_money, parse_amount, to_nanos
    from monitor.store.pools import set_budget

    if (amount is None) == (not remove):
        fail("give an AMOUNT, or --none to remove the budget", 2)
    settings = settings_or_exit()
    try:
        budget = None if amount is None else to_nanos(parse_amount(amount, what="a budget"))
    except PriceError as exc:
        fail(str(exc))
    with transaction(settings) as conn:
        set_budget(conn, name, budget)
    shown = "none" if budget is None else format_money(budget, settings.currency)
    click.echo(f"pool {name}: daily budget {shown}")


@pools.command("list")
def pools_list() -> None:
    """Every pool: its quota today, budget and keys."""
    from monitor.ledger.prices import format_money
    from monitor.store.keys import list_keys
    from monitor.store.pools import list_pools, pool_quota_for

    settings = settings_or_exit()
    today = quota_day_today(settings)
    with transaction(settings) as conn:
        found = list_pools(conn)
        names = {key.key_id: key.name for key in list_keys(conn)}
        quotas = {
            p.name: pool_quota_for(conn, p.name, today, settings.default_quota) for p in found
        }
    if not found:
        click.echo("no pools yet; add one with `longcat-monitor pools add NAME --quota N`")
        return
    for pool in found:
        budget = (
            "" if pool.budget_nanos is None else format_money(pool.budget_nanos, settings.currency)
        )
        keys = ", ".join(names.get(key_id, key_id) for key_id in pool.key_ids) or "(no keys)"
        click.echo(
            f"{pool.name}: {quotas[pool.name]:,} tokens a day"
            + (f", budget {budget} a day" if budget else "")
            + f"; keys: {keys}"
        )


@pools.command("set-channels")
@click.argument("name")
@click.argument("urls", nargs=-1, metavar="[URL]...")
def pools_set_channels(name: str, urls: tuple[str, ...]) -> None:
    """Send pool NAME's alerts (its quota, forecast, budget) to its own channels, as
    `keys set-channels` does for a key; ``-`` reads the URLs from standard input, one a line."""
    from monitor.store.pools import require_pool
    from monitor.store.silences import set_pool_channels

    urls, channels = channel_urls(urls)
    settings = settings_or_exit()
    with transaction(settings) as conn:
        require_pool(conn, name)
        set_pool_channels(conn, name, urls)
    show_channels(f"pool {name}", channels)
