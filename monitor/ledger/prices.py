"""Dated prices and the cost of a call's tokens at them: pure arithmetic, no I/O but the
package's own price table.

Money is an integer number of **nano-units** (10⁻⁹ of a dollar or a yuan), never a float. A
price is given per 1M tokens with at most 3 decimal places, so it is a whole number of nano-units
per token ($0.30 per 1M = 300), and the cost of any number of tokens is exact:

>>> rates = Rates.per_million("0.30", "0.006", "1.20")
>>> cost = cost_of(TokenSplit(uncached_input=600_000, cached_input=400_000, output=500_000), rates)
>>> format_money(cost, "USD")
'$0.7824'

How a call's tokens split, per API (:func:`split_tokens`; the rollup's SQL in
:mod:`monitor.store.grouping` applies the same rule):

- **OpenAI style** (chat completions, the Responses API, and ``other``): the recorded
  ``input_tokens`` (``prompt_tokens`` / ``input_tokens``) *include* the cached ones
  (``cached_tokens``, recorded as ``cache_read_tokens``): uncached = input − cached.
- **Anthropic style**: ``input_tokens`` exclude the cache. ``cache_read_input_tokens`` are cached
  input; ``cache_creation_input_tokens`` (recorded as ``cache_write_tokens``) are uncached input:
  uncached = input + cache creation, cached = cache read.
- Output is ``output_tokens`` on both; reasoning tokens are part of it and are not added again.

A day is priced with the entry in force for its model and currency that day (:func:`price_on`):
the one with the latest ``effective_from`` on or before the day, a deployment's entry winning over
the published one of the same day. Amounts are never converted between currencies.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from importlib import resources
from typing import Any, Final, Literal

Currency = Literal["USD", "CNY"]
CURRENCIES: Final[tuple[Currency, ...]] = ("USD", "CNY")
DEFAULT_CURRENCY: Final[Currency] = "USD"
SYMBOLS: Final[Mapping[str, str]] = {"USD": "$", "CNY": "¥"}
#: Nano-units in one dollar or yuan.
NANOS: Final = 10**9
#: Prices are quoted per this many tokens.
PRICE_TOKENS: Final = 1_000_000
#: Decimal places a price per 1M tokens may have (one nano-unit per token).
PRICE_DECIMALS: Final = 3
#: Where a price entry comes from.
PUBLISHED: Final = "published"
DEPLOYMENT: Final = "deployment"
#: The package data file holding the published prices.
PRICE_TABLE: Final = "prices.toml"


class PriceError(ValueError):
    """A price or an amount that cannot be used; the message says why, for a person to read."""


def parse_amount(text: str | Decimal, *, places: int = 9, what: str = "an amount") -> Decimal:
    """A non-negative decimal with at most ``places`` decimal places.

    >>> parse_amount("1,000.50")
    Decimal('1000.50')
    """
    try:
        value = Decimal(str(text).strip().replace(",", "").replace("_", ""))
    except InvalidOperation:
        raise PriceError(f"{what} is a decimal number such as 0.30, got {text!r}") from None
    if not value.is_finite() or value < 0:
        raise PriceError(f"{what} must be a number of at least 0, got {text!r}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise PriceError(f"{what} has at most {places} decimal places, got {text!r}")
    return value


def to_nanos(amount: Decimal) -> int:
    """An amount of money (at most 9 decimal places) in nano-units."""
    return int(amount * NANOS)


def money(nanos: int) -> Decimal:
    """Nano-units as an exact :class:`~decimal.Decimal` amount.

    >>> money(782_400_000)
    Decimal('0.7824')
    """
    value = (Decimal(nanos) / NANOS).normalize()
    return value if value != value.to_integral() else value.quantize(Decimal(1))


def amount_text(nanos: int, *, places: int | None = None) -> str:
    """``nanos`` as a decimal: every significant digit and at least two decimals (or exactly
    ``places`` decimals, rounded half-even).

    >>> amount_text(300_000_000), amount_text(6_000_000), amount_text(1_235_000_000, places=2)
    ('0.30', '0.006', '1.24')
    """
    value = Decimal(nanos) / NANOS
    if places is None:
        exponent = value.normalize().as_tuple().exponent
        places = max(2, -exponent if isinstance(exponent, int) else 0)
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def format_money(nanos: int, currency: str, *, places: int | None = None) -> str:
    """``nanos`` written with the currency's symbol, as :func:`amount_text`.

    >>> format_money(5_216_000_000, "CNY"), format_money(-1_500_000_000, "USD", places=2)
    ('¥5.216', '-$1.50')
    """
    text = amount_text(abs(nanos), places=places)
    return f"{'-' if nanos < 0 else ''}{SYMBOLS.get(currency, currency + ' ')}{text}"


@dataclass(frozen=True, slots=True)
class Rates:
    """Prices in nano-units per token (= per 1M tokens, in thousandths of the currency)."""

    uncached_input: int
    cached_input: int
    output: int

    @classmethod
    def per_million(
        cls, uncached_input: str | Decimal, cached_input: str | Decimal, output: str | Decimal
    ) -> Rates:
        """Rates from prices per 1M tokens (decimals, at most :data:`PRICE_DECIMALS` places)."""

        def nanos(text: str | Decimal, name: str) -> int:
            price = parse_amount(text, places=PRICE_DECIMALS, what=f"the {name} price")
            return int(price * NANOS / PRICE_TOKENS)

        return cls(
            nanos(uncached_input, "uncached input"),
            nanos(cached_input, "cached input"),
            nanos(output, "output"),
        )

    def per_million_text(self) -> tuple[str, str, str]:
        """The three prices per 1M tokens, as decimal text."""
        return (
            amount_text(self.uncached_input * PRICE_TOKENS),
            amount_text(self.cached_input * PRICE_TOKENS),
            amount_text(self.output * PRICE_TOKENS),
        )


@dataclass(frozen=True, slots=True)
class PriceEntry:
    """The prices of one model in one currency from quota day ``effective_from`` on.

    ``rates`` is what is charged; ``list_rates`` the published list price when a discount is in
    force (``None`` otherwise). ``source`` is :data:`PUBLISHED` or :data:`DEPLOYMENT`.
    """

    model: str
    currency: str
    effective_from: date
    rates: Rates
    list_rates: Rates | None = None
    source: str = PUBLISHED


def check_currency(text: str) -> Currency:
    """``USD`` or ``CNY`` (any case), else :class:`PriceError`."""
    upper = text.strip().upper()
    for currency in CURRENCIES:
        if upper == currency:
            return currency
    raise PriceError(f"a currency is one of {', '.join(CURRENCIES)}, got {text!r}")


def _rates(table: Any, where: str) -> Rates:
    if not isinstance(table, dict):
        raise PriceError(f"{where}: expected uncached_input, cached_input and output")
    try:
        return Rates.per_million(table["uncached_input"], table["cached_input"], table["output"])
    except KeyError as exc:
        raise PriceError(f"{where}: missing {exc.args[0]}") from None


def parse_price_table(text: str) -> tuple[PriceEntry, ...]:
    """The entries of a price table in the format of the package's ``prices.toml``."""
    entries: list[PriceEntry] = []
    for number, item in enumerate(tomllib.loads(text).get("price", []), start=1):
        where = f"price entry {number}"
        listed = _rates(item.get("list"), f"{where} list")
        charged = item.get("charged")
        effective = item["effective_from"]
        entries.append(
            PriceEntry(
                model=str(item["model"]),
                currency=check_currency(str(item["currency"])),
                effective_from=effective
                if isinstance(effective, date)
                else date.fromisoformat(str(effective)),
                rates=listed if charged is None else _rates(charged, f"{where} charged"),
                list_rates=None if charged is None else listed,
            )
        )
    return tuple(entries)


@functools.cache
def published_prices() -> tuple[PriceEntry, ...]:
    """LongCat's published prices, from the package's ``prices.toml``."""
    text = resources.files("monitor.ledger").joinpath(PRICE_TABLE).read_text(encoding="utf-8")
    return parse_price_table(text)


def price_on(
    entries: Iterable[PriceEntry], model: str | None, currency: str, day: date
) -> PriceEntry | None:
    """The entry in force for ``model`` (matched ignoring case) in ``currency`` on quota day
    ``day``, or ``None``: the model is unpriced that day.

    >>> table = published_prices()
    >>> price_on(table, "longcat-2.0", "CNY", date(2026, 11, 25)).rates.output
    8000
    """
    if not model:
        return None
    wanted = model.casefold()
    best: PriceEntry | None = None
    for entry in entries:
        if (
            entry.currency != currency
            or entry.effective_from > day
            or entry.model.casefold() != wanted
        ):
            continue
        if best is None or (entry.effective_from, entry.source == DEPLOYMENT) > (
            best.effective_from,
            best.source == DEPLOYMENT,
        ):
            best = entry
    return best


@dataclass(frozen=True, slots=True)
class TokenSplit:
    """A call's (or a group's) billed tokens as they are priced."""

    uncached_input: int = 0
    cached_input: int = 0
    output: int = 0

    def __add__(self, other: TokenSplit) -> TokenSplit:
        return TokenSplit(
            self.uncached_input + other.uncached_input,
            self.cached_input + other.cached_input,
            self.output + other.output,
        )


def split_tokens(
    api: str,
    input_tokens: int | None,
    output_tokens: int | None,
    cache_read_tokens: int | None = None,
    cache_write_tokens: int | None = None,
) -> TokenSplit:
    """A call's tokens as priced, by the rule of its API (see the module's docstring).

    >>> split_tokens("openai", 1000, 50, cache_read_tokens=400)
    TokenSplit(uncached_input=600, cached_input=400, output=50)
    >>> split_tokens("anthropic", 10, 50, cache_read_tokens=400, cache_write_tokens=90)
    TokenSplit(uncached_input=100, cached_input=400, output=50)
    """
    inputs = input_tokens or 0
    cached = cache_read_tokens or 0
    if api == "anthropic":
        return TokenSplit(inputs + (cache_write_tokens or 0), cached, output_tokens or 0)
    cached = min(cached, inputs)  # a count above the prompt is not trusted past the prompt
    return TokenSplit(inputs - cached, cached, output_tokens or 0)


def cost_of(tokens: TokenSplit, rates: Rates) -> int:
    """The cost of ``tokens`` at ``rates``, in nano-units (exact)."""
    return (
        tokens.uncached_input * rates.uncached_input
        + tokens.cached_input * rates.cached_input
        + tokens.output * rates.output
    )


def cache_saving(tokens: TokenSplit, rates: Rates) -> int:
    """What the cached input saved against paying the uncached price for it, in nano-units."""
    return tokens.cached_input * (rates.uncached_input - rates.cached_input)
