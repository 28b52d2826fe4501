"""Prices and the free quota, by hand: every figure here is worked out on paper to the nano-unit.

One nano-unit is 10⁻⁹ of a dollar or a yuan; a price per 1M tokens with three decimals is a whole
number of nano-units per token ($0.30 per 1M = 300 per token).
"""

from __future__ import annotations

from datetime import date

import pytest

from monitor.ledger.charges import Portion, charge_day, crossing_index, paid_share
from monitor.ledger.prices import (
    DEPLOYMENT,
    PriceEntry,
    PriceError,
    Rates,
    TokenSplit,
    cache_saving,
    cost_of,
    format_money,
    parse_price_table,
    price_on,
    published_prices,
    split_tokens,
)

DAY = date(2026, 11, 25)


def rates(model: str, currency: str, day: date = DAY) -> Rates:
    entry = price_on(published_prices(), model, currency, day)
    assert entry is not None
    return entry.rates


def test_the_platforms_worked_example() -> None:
    # 1,000,000 input tokens of which 400,000 cached, 500,000 output, at the discounted prices.
    tokens = split_tokens("openai", 1_000_000, 500_000, cache_read_tokens=400_000)
    assert tokens == TokenSplit(uncached_input=600_000, cached_input=400_000, output=500_000)
    # 600,000 × $0.30 + 400,000 × $0.006 + 500,000 × $1.20 per 1M = 0.18 + 0.0024 + 0.60
    usd = cost_of(tokens, rates("LongCat-2.0", "USD"))
    assert usd == 782_400_000
    assert format_money(usd, "USD") == "$0.7824"
    # 600,000 × ¥2 + 400,000 × ¥0.04 + 500,000 × ¥8 per 1M = 1.2 + 0.016 + 4
    cny = cost_of(tokens, rates("LongCat-2.0", "CNY"))
    assert cny == 5_216_000_000
    assert format_money(cny, "CNY") == "¥5.216"


def test_the_published_table() -> None:
    entry = price_on(published_prices(), "LongCat-2.0", "USD", DAY)
    assert entry is not None
    assert entry.rates == Rates(300, 6, 1_200)
    assert entry.list_rates == Rates(750, 15, 2_950)
    cny = price_on(published_prices(), "LongCat-2.0", "CNY", DAY)
    assert cny is not None
    assert (cny.rates, cny.list_rates) == (Rates(2_000, 40, 8_000), Rates(5_000, 100, 20_000))
    # LongCat-2.5-Preview is at the discounted prices.
    assert rates("LongCat-2.5-Preview", "USD") == Rates(300, 6, 1_200)
    assert rates("LongCat-2.5-Preview", "CNY") == Rates(2_000, 40, 8_000)
    # At the list prices the worked example would cost 0.45 + 0.006 + 1.475.
    assert cost_of(TokenSplit(600_000, 400_000, 500_000), Rates(750, 15, 2_950)) == 1_931_000_000


def test_a_model_without_a_price_is_unpriced() -> None:
    assert price_on(published_prices(), "LongCat-Flash-Chat", "USD", DAY) is None
    assert price_on(published_prices(), None, "USD", DAY) is None
    assert price_on(published_prices(), "LongCat-2.0", "USD", date(2025, 12, 31)) is None


def test_a_price_change_takes_over_on_its_day_and_a_deployment_wins_the_same_day() -> None:
    new_day = date(2026, 11, 26)
    table = [
        *published_prices(),
        PriceEntry("LongCat-2.0", "USD", new_day, Rates(750, 15, 2_950), source=DEPLOYMENT),
    ]
    assert rates("LongCat-2.0", "USD", DAY) == Rates(300, 6, 1_200)
    before = price_on(table, "LongCat-2.0", "USD", DAY)
    after = price_on(table, "longcat-2.0", "USD", new_day)
    assert before is not None and before.rates == Rates(300, 6, 1_200)
    assert after is not None and after.rates == Rates(750, 15, 2_950)
    same_day = PriceEntry("LongCat-2.0", "USD", date(2026, 1, 1), Rates(1, 1, 1), source=DEPLOYMENT)
    found = price_on([*published_prices(), same_day], "LongCat-2.0", "USD", DAY)
    assert found is same_day


def test_anthropic_cache_read_is_cached_input_and_cache_creation_uncached() -> None:
    # usage: input_tokens 1,000 (no cache), cache_creation_input_tokens 9,000,
    # cache_read_input_tokens 90,000, output_tokens 2,000
    tokens = split_tokens(
        "anthropic", 1_000, 2_000, cache_read_tokens=90_000, cache_write_tokens=9_000
    )
    assert tokens == TokenSplit(uncached_input=10_000, cached_input=90_000, output=2_000)
    # 10,000 × 300 + 90,000 × 6 + 2,000 × 1,200 = 3,000,000 + 540,000 + 2,400,000 nano-dollars
    assert cost_of(tokens, rates("LongCat-2.0", "USD")) == 5_940_000
    assert format_money(5_940_000, "USD") == "$0.00594"
    # Caching saved 90,000 × (300 − 6) nano-dollars.
    assert cache_saving(tokens, rates("LongCat-2.0", "USD")) == 26_460_000


def test_openai_reasoning_tokens_are_output_and_cached_never_exceed_the_prompt() -> None:
    # completion_tokens already include reasoning_tokens: nothing is added for them
    assert split_tokens("openai", 100, 50) == TokenSplit(100, 0, 50)
    assert split_tokens("openai", 100, 50, cache_read_tokens=500) == TokenSplit(0, 100, 50)
    assert split_tokens("other", None, None) == TokenSplit()


def test_the_call_crossing_the_free_quota_is_split_pro_rata() -> None:
    usd = rates("LongCat-2.0", "USD")
    first = TokenSplit(300_000, 0, 100_000)  # 400,000 tokens, all within the 500,000
    crossing = TokenSplit(200_000, 0, 100_000)  # 300,000 tokens: 100,000 free, 200,000 paid
    after = TokenSplit(0, 0, 50_000)  # all paid
    day = [
        Portion("first", 400_000, cost_of(first, usd)),
        Portion("crossing", 300_000, cost_of(crossing, usd)),
        Portion("after", 50_000, cost_of(after, usd)),
    ]
    charged = charge_day(day, quota=500_000)
    assert (charged["first"].free_tokens, charged["first"].cost) == (400_000, 0)
    # the crossing call costs 200,000 × 300 + 100,000 × 1,200 = 180,000,000; two thirds paid
    assert cost_of(crossing, usd) == 180_000_000
    assert charged["crossing"].free_tokens == 100_000
    assert charged["crossing"].paid_tokens == 200_000
    assert charged["crossing"].cost == 120_000_000
    assert charged["after"].cost == 50_000 * 1_200
    assert sum(c.cost for c in charged.values()) == 180_000_000  # $0.18 today


def test_rounding_happens_once_half_even_on_the_crossing_call() -> None:
    assert paid_share(1_000, 3, 1) == 333
    assert paid_share(1_000, 3, 2) == 667
    assert paid_share(5, 2, 1) == 2  # 2.5 → 2 (half-even)
    assert paid_share(7, 2, 1) == 4  # 3.5 → 4
    charged = charge_day([Portion("a", 3, 1_000)], quota=1)
    assert (charged["a"].free_tokens, charged["a"].paid_tokens, charged["a"].cost) == (1, 2, 667)


def test_unpriced_tokens_are_counted_not_costed() -> None:
    charged = charge_day(
        [Portion("a", 100, 1_000), Portion("b", 200, None), Portion("c", 5, None)], quota=50
    )
    assert charged["b"].unpriced_tokens == 200
    assert charged["b"].cost == 0
    assert charged["b"].paid_tokens == 200
    assert charged["a"].unpriced_tokens == 0
    free = charge_day([Portion("c", 5, None)], quota=50)["c"]  # free: costs nothing anyway
    assert (free.free_tokens, free.unpriced_tokens, free.cost) == (5, 0, 0)


def test_crossing_index_exact_boundaries() -> None:
    assert crossing_index([500, 10], 500) is None  # the quota used exactly: nothing to split
    assert crossing_index([499, 10], 500) == 1
    assert crossing_index([], 500) is None


@pytest.mark.parametrize("text", ["0.0001", "-1", "abc", "NaN"])
def test_bad_prices_are_refused(text: str) -> None:
    with pytest.raises(PriceError):
        Rates.per_million(text, "0", "0")


def test_a_price_table_in_the_package_format() -> None:
    entries = parse_price_table(
        '[[price]]\nmodel = "M"\ncurrency = "cny"\neffective_from = 2026-12-01\n'
        'list = { uncached_input = "1", cached_input = "0.1", output = "4" }\n'
    )
    assert entries == (PriceEntry("M", "CNY", date(2026, 12, 1), Rates(1_000, 100, 4_000)),)
