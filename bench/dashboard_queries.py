"""Every dashboard page's queries at scale: 90 days x 100 keys, N calls (default 10,000,000).

The calls are generated in a throwaway Postgres database (``bench.rollup``'s generator, spread
over 90 quota days, day partitions made first), rolled up once, then each page's query functions
from :mod:`monitor.queries` are timed as the page calls them, best of ``--rounds``. Baseline: a
one-row ``SELECT`` round trip on the same connection. Target: every page under 300 ms.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from sqlalchemy import Connection, text

from bench.common import machine, print_table
from bench.rollup import ADMIN, count_calls, generate
from monitor.config import load_settings
from monitor.ledger.quota_day import day_start, quota_day
from monitor.ledger.rollup import run_rollup
from monitor.queries import errors_latency, series, tables, today
from monitor.queries import filters as f
from monitor.store.engine import make_engine, upgrade
from monitor.store.partitions import create_day_partition

DAYS = 90
TARGET_MS = 300.0


def page_queries(
    conn: Connection, now: datetime, tz: Any, quota: int
) -> dict[str, Callable[[], Any]]:
    """What each page runs, with the widest filters (all keys, the whole 90 days)."""
    last_day = quota_day(now, tz)
    wide = f.Filters.last_days(DAYS, last_day)
    week = f.Filters.last_days(7, last_day)

    def usage() -> None:
        rows = series.hourly_rows(conn, wide, tz, error_classes=False)
        series.tokens_by_model(rows, series.bucket_for(wide), tz)
        series.daily_key_tokens(conn, wide, tz, quota)
        series.label_breakdown(conn, week, tz)

    def errors() -> None:
        rows = series.hourly_rows(conn, wide, tz)
        errors_latency.error_series(rows, series.bucket_for(wide), tz)
        errors_latency.error_totals(rows)
        tables.recent_failures(conn, wide, tz)

    def latency() -> None:
        rows = series.hourly_rows(conn, wide, tz, error_classes=False)
        errors_latency.latency_series(rows, series.bucket_for(wide), tz)
        errors_latency.latency_summary(rows)

    return {
        "filters (sidebar)": lambda: (
            f.key_choices(conn),
            f.model_choices(conn),
            f.endpoint_choices(conn, now),
            f.rollup_freshness(conn),
        ),
        "Today": lambda: today.today_overview(conn, tz=tz, default_quota=quota, now=now),
        "Usage over time (90 days)": usage,
        "Errors (90 days)": errors,
        "Latency (90 days)": latency,
        "Alerts": lambda: tables.alerts_overview(conn),
        "Keys": lambda: tables.key_details(conn, last_day, quota),
    }


def best_ms(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        begin = time.perf_counter()
        fn()
        times.append((time.perf_counter() - begin) * 1000)
    return min(times)


def run(url: str, n: int, rounds: int) -> list[list[str]]:
    engine = make_engine(url)
    upgrade(engine)
    settings = load_settings(database_url=url)
    tz = settings.tz
    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    first = day_start(quota_day(now, tz) - timedelta(days=DAYS - 1), tz)
    if count_calls(engine) < n:
        begin = time.perf_counter()
        with engine.begin() as conn:
            for offset in range(-1, DAYS + 2):
                create_day_partition(conn, (first + timedelta(days=offset)).date())
        generate(engine, n, first, (now - first).total_seconds(), "dash")
        print(f"generated {n:,} calls over {DAYS} days in {time.perf_counter() - begin:.0f} s")
        begin = time.perf_counter()
        run_rollup(engine, settings, now=now)
        print(f"rolled them up in {time.perf_counter() - begin:.0f} s", flush=True)
    with engine.connect() as conn:  # table statistics, as autovacuum would leave them
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    rows = []
    with engine.connect() as conn:
        base = best_ms(lambda: conn.execute(text("SELECT 1")).one(), rounds)
        rows.append(["baseline SELECT 1", f"{base:.2f}", "", "1x"])
        for page, fn in page_queries(conn, now, tz, settings.default_quota).items():
            ms = best_ms(fn, rounds)
            verdict = "met" if ms < TARGET_MS else f"missed, {ms / TARGET_MS:.1f}x"
            rows.append([page, f"{ms:.1f}", verdict, f"{ms / base:.0f}x"])
    engine.dispose()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    parser.add_argument("--postgres", default="lcm_bench_dashboard", help="throwaway database")
    parser.add_argument("--keep", action="store_true", help="keep the Postgres database")
    args = parser.parse_args(argv)
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        if not admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (args.postgres,)
        ).fetchone():
            admin.execute(f'CREATE DATABASE "{args.postgres}"')
    try:
        rows = run(f"postgresql://postgres@127.0.0.1:5432/{args.postgres}", args.calls, args.rounds)
    finally:
        if not args.keep:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.postgres}" WITH (FORCE)')
    print_table(
        f"Dashboard queries per page, {args.calls:,} calls over {DAYS} days x 100 keys on "
        f"Postgres, best of {args.rounds}, ms ({machine()}); target < {TARGET_MS:.0f} ms",
        ["page", "ms", "target", "vs baseline"],
        rows,
    )


if __name__ == "__main__":
    main()
