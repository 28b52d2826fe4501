"""The rollup job against a real, migrated database (SQLite and Postgres)."""

from __future__ import annotations

from dataclasses import MISSING, fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, select

from monitor.config import Settings, load_settings
from monitor.ledger.histogram import BUCKETS
from monitor.ledger.quota_day import hour_start
from monitor.ledger.rollup import DEFAULT_LATE_WINDOW, ROLLUP_NAME, run_rollup
from monitor.ledger.totals import Totals
from monitor.records import UNBILLED_ERROR_TYPES, CallRecord
from monitor.store.calls import insert_calls
from monitor.store.key_usage import daily_rows, hourly_tokens, key_usage_for_day, quota_for
from monitor.store.keys import add_key, set_quota
from monitor.store.models import (
    LATENCY_HISTOGRAM,
    ApiCall,
    DailyUsage,
    HourlyUsage,
    RollupState,
    UsageSlice,
)
from monitor.store.rollups import write_daily, write_hourly
from monitor.store.watermarks import advance_watermark, get_watermark

BEIJING_MIDNIGHT = datetime(2026, 11, 25, 16, 0, tzinfo=UTC)  # 2026-11-26 00:00 Beijing
DAY_BEFORE, DAY_AFTER = date(2026, 11, 25), date(2026, 11, 26)


def call(at: datetime, key: str | None = "k_alpha", **fields: Any) -> CallRecord:
    values: dict[str, Any] = {
        "api": "openai",
        "endpoint": "/openai/v1/chat/completions",
        "key_id": key,
        "key_hint": key[-4:] if key else None,
        "model": "LongCat-Flash-Chat",
        "status_code": 200,
        "latency_ms": 100.0,
    }
    values.update(fields)
    return CallRecord(started_at=at, **values)


def insert(engine: Engine, records: list[CallRecord]) -> None:
    with engine.begin() as conn:
        insert_calls(conn, records)


def around_midnight() -> list[CallRecord]:
    """Calls on both sides of the Beijing midnight, two keys, streams, errors of every kind."""
    records = []
    for i in range(40):
        at = BEIJING_MIDNIGHT + timedelta(seconds=-1 - 97 * i if i % 2 else 89 * i)
        records.append(
            call(
                at,
                key="k_alpha" if i % 3 else "k_bravo",
                model=["LongCat-Flash-Chat", "LongCat-Flash-Thinking", None][i % 3],
                stream=i % 4 == 0,
                input_tokens=100 + i,
                output_tokens=10 * i,
                total_tokens=100 + 11 * i,
                cache_read_tokens=i,
                reasoning_tokens=i // 2,
                latency_ms=50.0 + 7 * i,
                ttft_ms=20.0 + i if i % 4 == 0 else None,
                error_type=[None, None, "rate_limit", "stream_interrupted", "server_error"][i % 5],
            )
        )
    records.append(call(BEIJING_MIDNIGHT - timedelta(seconds=1), total_tokens=7))  # 23:59:59
    records.append(call(BEIJING_MIDNIGHT, total_tokens=11))  # 00:00:00
    records.append(call(BEIJING_MIDNIGHT, key=None, total_tokens=1000))  # no key: no quota
    return records


def daily_sums_from_api_calls(
    engine: Engine, settings: Settings
) -> dict[tuple[str, date], dict[str, int]]:
    """What daily_usage must hold, summed in SQL straight from api_calls."""
    from monitor.ledger.quota_day import quota_day

    sums: dict[tuple[str, date], dict[str, int]] = {}
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                ApiCall.key_id,
                ApiCall.started_at,
                ApiCall.error_type,
                ApiCall.total_tokens,
                ApiCall.input_tokens,
                ApiCall.output_tokens,
            ).where(ApiCall.key_id.is_not(None))
        )
        for key_id, started_at, error_type, total, input_tokens, output_tokens in rows:
            group = sums.setdefault(
                (key_id, quota_day(started_at, settings.tz)),
                {
                    "requests": 0,
                    "errors": 0,
                    "total_tokens": 0,
                    "input_tokens": 0,
                    "output_tokens": 0,
                },
            )
            group["requests"] += 1
            group["errors"] += error_type is not None
            if error_type not in UNBILLED_ERROR_TYPES:
                group["total_tokens"] += total or 0
                group["input_tokens"] += input_tokens or 0
                group["output_tokens"] += output_tokens or 0
    return sums


def daily_table(engine: Engine) -> dict[tuple[str, date], dict[str, int]]:
    with engine.connect() as conn:
        return {
            (row.key_id, row.day): {
                "requests": row.requests,
                "errors": row.errors,
                "total_tokens": row.total_tokens,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
            }
            for row in daily_rows(conn)
        }


def all_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        daily = [
            tuple(r) for r in conn.execute(select(DailyUsage.__table__).order_by("key_id", "day"))
        ]
        hourly = [
            tuple(r)
            for r in conn.execute(
                select(HourlyUsage.__table__).order_by("key_id", "hour", "model", "stream")
            )
        ]
    return daily + hourly


def test_totals_equal_the_sums_over_api_calls(engine: Engine, settings: Settings) -> None:
    insert(engine, around_midnight())
    result = run_rollup(engine, settings, now=BEIJING_MIDNIGHT + timedelta(hours=2))

    expected = daily_sums_from_api_calls(engine, settings)
    assert {day for _, day in expected} == {DAY_BEFORE, DAY_AFTER}
    assert daily_table(engine) == expected
    assert result.days == len(expected)
    with engine.connect() as conn:
        hourly_total = conn.execute(select(func.sum(HourlyUsage.total_tokens))).scalar_one()
        hourly_requests = conn.execute(select(func.sum(HourlyUsage.requests))).scalar_one()
    assert hourly_total == sum(group["total_tokens"] for group in expected.values())
    assert hourly_requests == sum(group["requests"] for group in expected.values())


def test_boundary_second_belongs_to_the_right_day(engine: Engine, settings: Settings) -> None:
    insert(
        engine,
        [
            call(BEIJING_MIDNIGHT - timedelta(seconds=1), total_tokens=7),
            call(BEIJING_MIDNIGHT, total_tokens=11),
        ],
    )
    run_rollup(engine, settings, now=BEIJING_MIDNIGHT + timedelta(minutes=1))
    assert {k: v["total_tokens"] for k, v in daily_table(engine).items()} == {
        ("k_alpha", DAY_BEFORE): 7,
        ("k_alpha", DAY_AFTER): 11,
    }


def test_unbilled_errors_count_as_errors_but_not_tokens(engine: Engine, settings: Settings) -> None:
    at = BEIJING_MIDNIGHT + timedelta(hours=1)
    insert(
        engine,
        [
            call(at, total_tokens=100, input_tokens=60, output_tokens=40),
            call(at, error_type="rate_limit", status_code=429, total_tokens=5000),
            call(at, error_type="auth", status_code=401, input_tokens=300),
            call(at, error_type="stream_interrupted", total_tokens=30),
        ],
    )
    run_rollup(engine, settings, now=at + timedelta(minutes=1))
    with engine.connect() as conn:
        (row,) = daily_rows(conn)
    assert (row.requests, row.errors, row.total_tokens) == (4, 3, 130)
    assert (row.input_tokens, row.output_tokens) == (60, 40)
    assert row.errors_by_class == {"auth": 1, "rate_limit": 1, "stream_interrupted": 1}
    assert row.latency_p50_ms == 100.0


def test_running_twice_gives_the_same_rows(engine: Engine, settings: Settings) -> None:
    insert(engine, around_midnight())
    now = BEIJING_MIDNIGHT + timedelta(hours=2)
    run_rollup(engine, settings, now=now)
    first = all_rows(engine)
    again = run_rollup(engine, settings, now=now)
    assert all_rows(engine) == first
    assert again.scanned == 0  # nothing new since the watermark, less the late window
    run_rollup(engine, settings, now=now + timedelta(hours=1))
    assert [row[:-1] for row in all_rows(engine)] == [row[:-1] for row in first]


def test_incremental_with_late_arrivals(engine: Engine, settings: Settings) -> None:
    start = BEIJING_MIDNIGHT - timedelta(minutes=30)
    insert(engine, [call(start + timedelta(minutes=i), total_tokens=10) for i in range(20)])
    first_now = start + timedelta(minutes=20)
    run_rollup(engine, settings, now=first_now)
    assert daily_table(engine)[("k_alpha", DAY_BEFORE)]["total_tokens"] == 200

    # New calls after the watermark, plus one written late but started 5 minutes before it.
    insert(
        engine,
        [
            call(first_now - timedelta(minutes=5), total_tokens=1),
            call(first_now + timedelta(minutes=1), total_tokens=1000),
            call(BEIJING_MIDNIGHT + timedelta(minutes=2), total_tokens=3),
        ],
    )
    result = run_rollup(engine, settings, now=BEIJING_MIDNIGHT + timedelta(minutes=5))
    assert result.since == first_now - timedelta(minutes=10)
    assert result.scanned < 23  # only the window was read
    assert daily_table(engine) == daily_sums_from_api_calls(engine, settings)
    assert daily_table(engine)[("k_alpha", DAY_BEFORE)]["total_tokens"] == 1201
    assert daily_table(engine)[("k_alpha", DAY_AFTER)]["total_tokens"] == 3


def test_quota_history_applies_from_its_day(engine: Engine, settings: Settings) -> None:
    days = [date(2026, 11, 23) + timedelta(days=n) for n in range(4)]
    with engine.begin() as conn:
        add_key(
            conn,
            key_id="k_alpha",
            name="search",
            hint="lpha",
            quota=500_000,
            effective_from=days[0],
            now=BEIJING_MIDNIGHT,
        )
    insert(
        engine,
        [call(BEIJING_MIDNIGHT + timedelta(days=n - 3, hours=1), total_tokens=n) for n in range(4)],
    )
    run_rollup(engine, settings, now=BEIJING_MIDNIGHT + timedelta(days=1))

    with engine.begin() as conn:
        set_quota(conn, "k_alpha", 5_000_000, days[2])
    run_rollup(engine, settings, now=BEIJING_MIDNIGHT + timedelta(days=1, minutes=1))

    with engine.connect() as conn:
        assert [(row.day, row.quota) for row in daily_rows(conn)] == [
            (days[0], 500_000),
            (days[1], 500_000),
            (days[2], 5_000_000),
            (days[3], 5_000_000),
        ]
        assert quota_for(conn, "k_alpha", days[1], 123) == 500_000
        assert quota_for(conn, "k_alpha", days[0] - timedelta(days=1), 123) == 123
        assert quota_for(conn, "k_unknown", days[3], 123) == 123


def test_query_functions(engine: Engine, settings: Settings) -> None:
    with engine.begin() as conn:
        add_key(
            conn,
            key_id="k_alpha",
            name="search",
            hint="lpha",
            recipients=["a@example.com"],
            quota=5_000_000,
            effective_from=DAY_AFTER,
            now=BEIJING_MIDNIGHT,
        )
        add_key(conn, key_id="k_idle", name="idle", hint="idle", now=BEIJING_MIDNIGHT)
    insert(
        engine,
        [
            call(BEIJING_MIDNIGHT + timedelta(minutes=10), total_tokens=100),
            call(BEIJING_MIDNIGHT + timedelta(minutes=70), total_tokens=50),
            call(BEIJING_MIDNIGHT + timedelta(minutes=71), total_tokens=5, stream=True),
            call(BEIJING_MIDNIGHT + timedelta(minutes=72), key="k_stray", error_type="auth"),
        ],
    )
    run_rollup(engine, settings, now=BEIJING_MIDNIGHT + timedelta(hours=2))
    with engine.connect() as conn:
        usage = key_usage_for_day(conn, DAY_AFTER, default_quota=500_000)
        burn = hourly_tokens(conn, "k_alpha", BEIJING_MIDNIGHT + timedelta(minutes=30))
    assert [(u.name, u.hint, u.quota, u.total_tokens, u.requests, u.errors) for u in usage] == [
        ("idle", "idle", 500_000, 0, 0, 0),
        ("search", "lpha", 5_000_000, 155, 3, 0),
        (None, "tray", 500_000, 0, 1, 1),
    ]
    assert usage[1].recipients == ("a@example.com",)
    assert usage[2].errors_by_class == {"auth": 1}
    assert burn == [(BEIJING_MIDNIGHT, 100), (BEIJING_MIDNIGHT + timedelta(hours=1), 55)]


def test_histograms_in_sql_match_the_python_ones(engine: Engine, settings: Settings) -> None:
    """The SQL bucket expression agrees with monitor.ledger.histogram; days merge their hours."""
    from monitor.ledger.histogram import histogram_of, percentile_of
    from monitor.store.models import LATENCY_HISTOGRAM, TTFT_HISTOGRAM

    records = around_midnight()
    insert(engine, records)
    run_rollup(engine, settings, now=BEIJING_MIDNIGHT + timedelta(hours=2))
    keyed = [r for r in records if r.key_id is not None]
    with engine.connect() as conn:
        hourly = list(conn.execute(select(HourlyUsage.__table__)))
        day_rows = {(r.key_id, r.day): r for r in daily_rows(conn)}
    latency = [sum(row._mapping[c] for row in hourly) for c in LATENCY_HISTOGRAM]
    ttft = [sum(row._mapping[c] for row in hourly) for c in TTFT_HISTOGRAM]
    assert latency == histogram_of(r.latency_ms for r in keyed if r.latency_ms is not None)
    assert ttft == histogram_of(r.ttft_ms for r in keyed if r.ttft_ms is not None)

    from monitor.ledger.quota_day import quota_day

    for (key_id, day), row in day_rows.items():
        values = [
            r.latency_ms
            for r in keyed
            if r.key_id == key_id and quota_day(r.started_at, settings.tz) == day
        ]
        expected = percentile_of(
            histogram_of(v for v in values if v is not None),
            0.95,
            low=min(v for v in values if v is not None),
            high=max(v for v in values if v is not None),
        )
        assert row.latency_p95_ms == pytest.approx(expected)
        assert row.reasoning_tokens == sum(
            r.reasoning_tokens or 0
            for r in keyed
            if r.key_id == key_id
            and quota_day(r.started_at, settings.tz) == day
            and r.error_type not in UNBILLED_ERROR_TYPES
        )


def test_half_hour_time_zone_builds_days_from_raw_calls(database_url: str, engine: Engine) -> None:
    settings = load_settings(database_url=database_url, quota_tz="Asia/Kolkata")
    kolkata_midnight = datetime(2026, 11, 25, 18, 30, tzinfo=UTC)
    insert(
        engine,
        [
            call(kolkata_midnight - timedelta(minutes=10), total_tokens=7),
            call(kolkata_midnight + timedelta(minutes=10), total_tokens=11),
        ],
    )
    run_rollup(engine, settings, now=kolkata_midnight + timedelta(hours=1))
    assert daily_table(engine) == daily_sums_from_api_calls(engine, settings)
    assert {day: v["total_tokens"] for (_, day), v in daily_table(engine).items()} == {
        date(2026, 11, 25): 7,
        date(2026, 11, 26): 11,
    }


def rows_without_stamps(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every daily and hourly row, as dicts without ``updated_at``."""
    tables = {"daily": DailyUsage, "hourly": HourlyUsage}
    rows: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for name, model in tables.items():
            keys = [c for c in model.__table__.primary_key.columns]
            found = conn.execute(select(model.__table__).order_by(*keys))
            rows[name] = [
                {k: v for k, v in row._mapping.items() if k != "updated_at"} for row in found
            ]
    return rows


def test_ticks_with_late_arrivals_give_what_a_full_recompute_gives(
    engine: Engine, settings: Settings
) -> None:
    """Ticks every 7 minutes over three hours and a quota-day boundary; each batch also holds
    calls written late (started up to 9 minutes before the last tick) and ones not yet due."""
    now = BEIJING_MIDNIGHT - timedelta(hours=1, minutes=3)
    for step in range(26):
        batch = []
        for i in range(12):
            late = i % 4 == 0
            at = now - timedelta(minutes=9) + timedelta(seconds=41 * i) if late else now
            at += timedelta(seconds=(step * 13 + i * 29) % 420)
            batch.append(
                call(
                    at,
                    key="k_alpha" if i % 3 else "k_bravo",
                    model=["LongCat-Flash-Chat", None][i % 2],
                    stream=i % 5 == 0,
                    total_tokens=10 + i,
                    input_tokens=6 + i,
                    output_tokens=4,
                    latency_ms=40.0 + 13 * i + step,
                    ttft_ms=9.0 + i if i % 5 == 0 else None,
                    error_type=["rate_limit", None, None, "stream_interrupted"][i % 4],
                )
            )
        insert(engine, batch)
        now += timedelta(minutes=7)
        run_rollup(engine, settings, now=now)
        assert daily_table(engine) == daily_sums_from_api_calls(engine, settings)
    ticked = rows_without_stamps(engine)

    with engine.begin() as conn:
        for model in (RollupState, DailyUsage, HourlyUsage, UsageSlice):
            conn.execute(delete(model))
    full = run_rollup(engine, settings, now=now)
    assert full.since is None
    assert rows_without_stamps(engine) == ticked
    assert {day for _, day in daily_table(engine)} == {DAY_BEFORE, DAY_AFTER}


def test_only_the_slices_a_tick_may_need_are_kept(engine: Engine, settings: Settings) -> None:
    start = BEIJING_MIDNIGHT - timedelta(hours=3)
    insert(engine, [call(start + timedelta(minutes=7 * i), total_tokens=1) for i in range(40)])
    now = start + timedelta(hours=4, minutes=20)
    run_rollup(engine, settings, now=now)
    run_rollup(engine, settings, now=now + timedelta(minutes=3))
    with engine.connect() as conn:
        kept = conn.execute(select(func.min(UsageSlice.slice_start))).scalar_one()
    assert kept is None or kept >= hour_start(now - DEFAULT_LATE_WINDOW)
    assert daily_table(engine) == daily_sums_from_api_calls(engine, settings)


def test_two_runs_at_once_leave_what_one_run_leaves(engine: Engine, settings: Settings) -> None:
    """A deposed leader's run beside the new leader's: they take turns, the rows are right."""
    from concurrent.futures import ThreadPoolExecutor

    insert(engine, around_midnight())
    first = BEIJING_MIDNIGHT + timedelta(minutes=30)
    run_rollup(engine, settings, now=first)
    insert(engine, [call(first + timedelta(minutes=i), total_tokens=5) for i in range(1, 4)])
    later = [first + timedelta(minutes=5), first + timedelta(minutes=6)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda now: run_rollup(engine, settings, now=now), later))
    with engine.connect() as conn:
        assert get_watermark(conn, ROLLUP_NAME) == later[-1]
    assert daily_table(engine) == daily_sums_from_api_calls(engine, settings)
    together = rows_without_stamps(engine)
    with engine.begin() as conn:
        for model in (RollupState, DailyUsage, HourlyUsage, UsageSlice):
            conn.execute(delete(model))
    run_rollup(engine, settings, now=later[-1])
    assert rows_without_stamps(engine) == together


def test_a_run_that_commits_last_never_moves_the_watermark_back(
    engine: Engine, settings: Settings
) -> None:
    """Two runs at once: the one that started earlier (an older ``now``) may commit last."""
    later = BEIJING_MIDNIGHT + timedelta(minutes=36)
    with engine.begin() as conn:
        advance_watermark(conn, ROLLUP_NAME, later, now=later)
        advance_watermark(conn, ROLLUP_NAME, later - timedelta(minutes=1), now=later)
    with engine.connect() as conn:
        assert get_watermark(conn, ROLLUP_NAME) == later


def test_rollup_rows_are_written_in_full(engine: Engine) -> None:
    """write_hourly/write_daily write every figure of Totals their tables have a column for
    (their column lists are derived from the models), each in its own column."""
    totals = Totals(
        errors_by_class={"rate_limit": 2},
        latency_histogram=list(range(1, BUCKETS + 1)),
        ttft_histogram=list(range(2, BUCKETS + 2)),
    )
    figures = {f.name: i for i, f in enumerate(fields(Totals)) if f.default is not MISSING}
    for name, value in figures.items():
        setattr(totals, name, value)
    hour = datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    with engine.begin() as conn:
        write_hourly(conn, {("k_alpha", hour, "LongCat-2.0", True): totals}, now=hour)
        write_daily(conn, [("k_alpha", DAY_BEFORE, totals, 500_000)], now=hour)
    with engine.connect() as conn:
        hourly, daily = (
            conn.execute(select(model.__table__)).mappings().one()
            for model in (HourlyUsage, DailyUsage)
        )
    for row in (hourly, daily):
        assert {name: row[name] for name in figures if name in row} == {
            name: value for name, value in figures.items() if name in row
        }
    assert [hourly[name] for name in LATENCY_HISTOGRAM] == totals.latency_histogram
    assert (daily["quota"], daily["errors_by_class"]) == (500_000, {"rate_limit": 2})
