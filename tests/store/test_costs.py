"""What the rollup charges, on SQLite and Postgres: hand-computed figures to the nano-unit.

The default free quota is 500,000 tokens a quota day (Beijing). Prices are LongCat's published
discounted ones unless a test sets its own: LongCat-2.0 $0.30 / $0.006 / $1.20 per 1M tokens
(300 / 6 / 1,200 nano-dollars a token), ¥2 / ¥0.04 / ¥8 (2,000 / 40 / 8,000 nano-yuan).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from capture import drive_stream
from sqlalchemy import Engine, select

from monitor.capture.bodies import request_facts
from monitor.config import Settings, load_settings
from monitor.ledger.costing import reprice_from
from monitor.ledger.prices import Rates
from monitor.ledger.rollup import run_rollup
from monitor.records import CallRecord
from monitor.store.calls import insert_calls
from monitor.store.models import DailyUsage, HourlyUsage
from monitor.store.prices import set_price

DAY, NEXT_DAY = date(2026, 11, 25), date(2026, 11, 26)
DAY_START = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)  # 2026-11-25 00:00 Beijing
MIDNIGHT = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)  # 2026-11-26 00:00 Beijing
KEY = "k_cost"


def chat(at: datetime, key: str = KEY, **fields: Any) -> CallRecord:
    values: dict[str, Any] = {
        "api": "openai",
        "endpoint": "/openai/v1/chat/completions",
        "key_id": key,
        "key_hint": key[-4:],
        "model": "LongCat-2.0",
        "status_code": 200,
        "latency_ms": 100.0,
        "usage_source": "reported",
    }
    values.update(fields)
    tokens = [values.get(name) or 0 for name in ("input_tokens", "output_tokens")]
    if values["api"] == "anthropic":
        tokens += [values.get("cache_read_tokens") or 0, values.get("cache_write_tokens") or 0]
    values.setdefault("total_tokens", sum(tokens))
    return CallRecord(started_at=at, **values)


def quota_used(at: datetime, key: str = KEY) -> CallRecord:
    """A call taking exactly the day's free 500,000 tokens: what follows is all paid."""
    return chat(at, key, input_tokens=400_000, output_tokens=100_000)


def roll(engine: Engine, settings: Settings, records: list[CallRecord]) -> None:
    with engine.begin() as conn:
        insert_calls(conn, records)
    run_rollup(engine, settings, now=MIDNIGHT + timedelta(hours=12))


def day_row(engine: Engine, day: date = DAY, key: str = KEY) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(DailyUsage.__table__).where(DailyUsage.key_id == key, DailyUsage.day == day)
        ).one()


def hour_costs(engine: Engine, key: str = KEY) -> dict[datetime, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(HourlyUsage.hour, HourlyUsage.cost_nanos).where(HourlyUsage.key_id == key)
        ).all()
    costs: dict[datetime, int] = {}
    for hour, cost in rows:
        costs[hour] = costs.get(hour, 0) + cost
    return costs


def worked_example(at: datetime) -> CallRecord:
    """1,000,000 input tokens of which 400,000 cached, 500,000 output."""
    return chat(at, input_tokens=1_000_000, cache_read_tokens=400_000, output_tokens=500_000)


def test_the_worked_example_in_dollars(engine: Engine, settings: Settings) -> None:
    morning = DAY_START + timedelta(hours=9)
    roll(engine, settings, [quota_used(morning), worked_example(morning + timedelta(minutes=30))])
    row = day_row(engine)
    assert row.cost_nanos == 782_400_000  # $0.7824
    assert (row.free_tokens, row.paid_tokens, row.unpriced_tokens) == (500_000, 1_500_000, 0)
    assert (row.uncached_input_tokens, row.cached_input_tokens) == (1_000_000, 400_000)
    assert row.currency == "USD"
    assert hour_costs(engine) == {morning: 782_400_000}


def test_the_worked_example_in_yuan(engine: Engine, database_url: str) -> None:
    settings = load_settings(database_url=database_url, currency="CNY")
    morning = DAY_START + timedelta(hours=9)
    roll(engine, settings, [quota_used(morning), worked_example(morning + timedelta(minutes=30))])
    row = day_row(engine)
    assert (row.cost_nanos, row.currency) == (5_216_000_000, "CNY")  # ¥5.216


def test_the_call_crossing_the_free_quota(engine: Engine, settings: Settings) -> None:
    hour = DAY_START + timedelta(hours=3)
    roll(
        engine,
        settings,
        [
            # 400,000 tokens: within the quota
            chat(hour + timedelta(minutes=1), input_tokens=300_000, output_tokens=100_000),
            # refused, never billed: does not move the crossing
            chat(
                hour + timedelta(minutes=2),
                status_code=429,
                error_type="rate_limit",
                input_tokens=90_000,
            ),
            # 300,000 tokens, 100,000 of them free: 200,000 × 300 + 100,000 × 1,200 = 180,000,000
            # in all, two thirds of it paid = 120,000,000
            chat(hour + timedelta(minutes=3), input_tokens=200_000, output_tokens=100_000),
            # past the quota: 50,000 × 1,200 = 60,000,000 (another model at the same prices)
            chat(hour + timedelta(minutes=4), model="LongCat-2.5-Preview", output_tokens=50_000),
            # the next hour: 10,000 × 1,200 = 12,000,000
            chat(hour + timedelta(minutes=70), output_tokens=10_000),
        ],
    )
    row = day_row(engine)
    assert row.free_tokens == 500_000
    assert row.paid_tokens == 200_000 + 50_000 + 10_000
    assert row.cost_nanos == 120_000_000 + 60_000_000 + 12_000_000  # $0.192
    assert hour_costs(engine) == {hour: 180_000_000, hour + timedelta(hours=1): 12_000_000}


def test_a_price_change_at_midnight_beijing_time(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:  # the list prices from the next quota day on
        rates = Rates.per_million("0.75", "0.015", "2.95")
        set_price(conn, "LongCat-2.0", "USD", NEXT_DAY, rates, now=MIDNIGHT)
    second = timedelta(seconds=1)
    roll(
        engine,
        settings,
        [
            quota_used(DAY_START),
            chat(MIDNIGHT - second, output_tokens=1_000_000),  # 23:59:59: 1,000,000 × 1,200
            quota_used(MIDNIGHT),
            chat(MIDNIGHT + second, output_tokens=1_000_000),  # 00:00:01: 1,000,000 × 2,950
        ],
    )
    assert day_row(engine, DAY).cost_nanos == 1_200_000_000
    assert day_row(engine, NEXT_DAY).cost_nanos == 2_950_000_000


def test_anthropic_cache_read_and_creation(engine: Engine, settings: Settings) -> None:
    at = DAY_START + timedelta(hours=5)
    call = chat(
        at + timedelta(minutes=1),
        api="anthropic",
        endpoint="/anthropic/v1/messages",
        input_tokens=1_000,
        cache_write_tokens=9_000,
        cache_read_tokens=90_000,
        output_tokens=2_000,
    )
    roll(engine, settings, [quota_used(at), call])
    row = day_row(engine)
    # uncached 10,000 × 300 + cached 90,000 × 6 + output 2,000 × 1,200
    assert row.cost_nanos == 3_000_000 + 540_000 + 2_400_000  # $0.00594
    assert row.paid_tokens == 102_000
    assert (row.uncached_input_tokens, row.cached_input_tokens) == (400_000 + 10_000, 90_000)


def test_a_model_without_a_price_is_unpriced_not_free(engine: Engine, settings: Settings) -> None:
    at = DAY_START + timedelta(hours=5)
    roll(
        engine,
        settings,
        [
            quota_used(at),
            chat(at + timedelta(seconds=1), model="LongCat-Flash-Chat", output_tokens=7),
        ],
    )
    row = day_row(engine)
    assert (row.unpriced_tokens, row.paid_tokens, row.cost_nanos) == (7, 7, 0)


def test_a_price_correction_charges_the_day_again(engine: Engine, settings: Settings) -> None:
    morning = DAY_START + timedelta(hours=9)
    roll(engine, settings, [quota_used(morning), worked_example(morning + timedelta(minutes=30))])
    assert day_row(engine).cost_nanos == 782_400_000
    with engine.begin() as conn:
        rates = Rates.per_million("0.75", "0.015", "2.95")
        set_price(conn, "LongCat-2.0", "USD", DAY, rates, now=MIDNIGHT)
        reprice_from(conn, settings, DAY)
    # 600,000 × 750 + 400,000 × 15 + 500,000 × 2,950 = 450,000,000 + 6,000,000 + 1,475,000,000
    assert day_row(engine).cost_nanos == 1_931_000_000
    assert hour_costs(engine) == {morning: 1_931_000_000}


def test_free_calls_cost_nothing(engine: Engine, settings: Settings) -> None:
    at = DAY_START + timedelta(hours=1)
    roll(engine, settings, [chat(at, input_tokens=1_000, output_tokens=100)])
    row = day_row(engine)
    assert (row.free_tokens, row.paid_tokens, row.cost_nanos) == (1_100, 0, 0)


def test_a_pool_shares_one_free_quota(engine: Engine, settings: Settings) -> None:
    from monitor.store.keys import add_key
    from monitor.store.pools import add_pool, set_key_pool

    with engine.begin() as conn:
        add_pool(conn, "team", quota=500_000, effective_from=DAY, now=MIDNIGHT)
        for key in ("k_one", "k_two"):
            add_key(conn, key_id=key, name=key, hint=key[-4:], now=MIDNIGHT)
            set_key_pool(conn, key, "team")
    at = DAY_START + timedelta(hours=2)
    roll(
        engine,
        settings,
        [
            chat(at, "k_one", input_tokens=300_000, output_tokens=100_000),  # free
            # crosses the pool's quota: 100,000 of its 300,000 tokens free, the rest paid
            chat(at + timedelta(minutes=1), "k_two", input_tokens=200_000, output_tokens=100_000),
            chat(at + timedelta(minutes=2), "k_one", output_tokens=1_000),  # 1,000 × 1,200
        ],
    )
    one, two = day_row(engine, key="k_one"), day_row(engine, key="k_two")
    assert (one.free_tokens, one.paid_tokens, one.cost_nanos) == (400_000, 1_000, 1_200_000)
    assert (two.free_tokens, two.paid_tokens, two.cost_nanos) == (100_000, 200_000, 120_000_000)


def test_a_streamed_responses_call(engine: Engine, settings: Settings) -> None:
    """A Responses API stream read by the observer, as the wrapper and the gateway read it:
    its usage comes from ``response.completed`` (input includes the cached tokens, output the
    reasoning ones), and it is priced like the worked example: $0.7824 once the free quota is
    used up."""
    usage = {
        "input_tokens": 1_000_000,
        "input_tokens_details": {"cached_tokens": 400_000},
        "output_tokens": 500_000,
        "output_tokens_details": {"reasoning_tokens": 200_000},
        "total_tokens": 1_500_000,
    }
    done = {"id": "resp_1", "object": "response", "status": "completed", "usage": usage}
    stream = [
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"delta":"Hello"}\n\n',
        b"event: response.completed\ndata: "
        + json.dumps(
            {"type": "response.completed", "response": {**done, "model": "LongCat-2.0"}}
        ).encode()
        + b"\n\n",
    ]
    facts, _ = request_facts(b'{"model":"LongCat-2.0","stream":true,"input":"Hi"}')
    at = DAY_START + timedelta(hours=3)
    record = CallRecord(
        started_at=at, api="openai", endpoint="/openai/v1/responses", key_id=KEY, key_hint="cost"
    )
    drive_stream(record, facts, stream, strip=False, end=True)
    assert (record.error_type, record.usage_source) == (None, "reported")
    assert (record.cache_read_tokens, record.reasoning_tokens) == (400_000, 200_000)
    roll(engine, settings, [quota_used(at - timedelta(hours=1)), record])
    # 600,000 uncached x 300 + 400,000 cached x 6 + 500,000 output x 1,200 nano-dollars
    assert day_row(engine).cost_nanos == 782_400_000


def test_a_days_cost_shared_out_by_client_and_by_label(engine: Engine, settings: Settings) -> None:
    """Past the free quota each client's (and label value's) share is exactly what its calls
    cost; the shares add up to the day's charged cost."""
    from monitor.queries import Filters, cost_shares

    morning = DAY_START + timedelta(hours=8)
    paid_hour = DAY_START + timedelta(hours=9)
    x = chat(
        paid_hour,
        client="openai-python 3.63.0",
        labels={"team": "search", "odd 'name\"": "x"},
        input_tokens=300_000,
        cache_read_tokens=100_000,
        output_tokens=100_000,
    )
    y = chat(
        paid_hour + timedelta(minutes=5),
        client="claude-code 2.1.328",
        labels={"team": "ads"},
        input_tokens=100_000,
        output_tokens=100_000,
    )
    z = chat(paid_hour + timedelta(minutes=9), input_tokens=10_000, output_tokens=0)
    roll(engine, settings, [quota_used(morning), x, y, z])
    # x: 200,000 uncached x 300 + 100,000 cached x 6 + 100,000 output x 1,200 nano-dollars
    x_cost = 60_000_000 + 600_000 + 120_000_000
    y_cost = 30_000_000 + 120_000_000
    z_cost = 3_000_000
    assert day_row(engine).cost_nanos == x_cost + y_cost + z_cost
    filters = Filters(start=DAY, end=DAY)
    with engine.connect() as conn:
        by_client = cost_shares(conn, filters, settings.tz, "USD")
        by_team = cost_shares(conn, filters, settings.tz, "USD", label="team")
    assert {(s.day, s.value, s.cost) for s in by_client} == {
        (DAY, "openai-python 3.63.0", x_cost),
        (DAY, "claude-code 2.1.328", y_cost),
        (DAY, "", z_cost),
    }
    with engine.connect() as conn:
        by_odd = cost_shares(conn, filters, settings.tz, "USD", label="odd 'name\"")
    assert {(s.value, s.cost) for s in by_odd} == {("x", x_cost), ("", y_cost + z_cost)}
    assert {(s.value, s.cost, s.tokens) for s in by_team} == {
        ("search", x_cost, 400_000),
        ("ads", y_cost, 200_000),
        ("", z_cost, 10_000),
    }
