"""A deployment's dated prices (table ``prices``), beside the published table of the package.

A price is kept like a quota: a history of rows per model and currency, each in force from its
quota day on until the next one. :func:`price_table` gives the published entries
(:func:`monitor.ledger.prices.published_prices`) together with the deployment's, which win over
a published entry of the same model, currency and day.

>>> with engine.begin() as conn:  # doctest: +SKIP
...     set_price(conn, "LongCat-2.0", "CNY", date(2026, 12, 1),
...               Rates.per_million("2", "0.04", "8"), now=now)
...     price_on(price_table(conn), "LongCat-2.0", "CNY", date(2026, 12, 1)).source
'deployment'
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, delete, insert, select

from monitor.ledger.prices import DEPLOYMENT, PriceEntry, Rates, published_prices
from monitor.store.models import Price

__all__ = ["deployment_prices", "price_table", "set_price"]


def set_price(
    conn: Connection,
    model: str,
    currency: str,
    effective_from: date,
    rates: Rates,
    *,
    now: datetime,
) -> None:
    """Put ``rates`` in force for ``model`` in ``currency`` from quota day ``effective_from`` on
    (setting the same day again replaces that day's row)."""
    conn.execute(
        delete(Price).where(
            Price.model == model,
            Price.currency == currency,
            Price.effective_from == effective_from,
        )
    )
    conn.execute(
        insert(Price).values(
            model=model,
            currency=currency,
            effective_from=effective_from,
            uncached_input_nanos=rates.uncached_input,
            cached_input_nanos=rates.cached_input,
            output_nanos=rates.output,
            created_at=now,
        )
    )


def deployment_prices(conn: Connection) -> list[PriceEntry]:
    """The deployment's own price rows, by model, currency and day."""
    rows = conn.execute(
        select(Price.__table__).order_by(Price.model, Price.currency, Price.effective_from)
    )
    return [
        PriceEntry(
            model=row.model,
            currency=row.currency,
            effective_from=row.effective_from,
            rates=Rates(
                int(row.uncached_input_nanos), int(row.cached_input_nanos), int(row.output_nanos)
            ),
            source=DEPLOYMENT,
        )
        for row in rows
    ]


def price_table(conn: Connection) -> list[PriceEntry]:
    """Every price entry in force anywhere: the published ones, then the deployment's."""
    return [*published_prices(), *deployment_prices(conn)]
