"""Rollups at scale: a full day recomputed, then one incremental tick, on Postgres and SQLite.

A quota day of N calls (default 10,000,000 on Postgres, 1,000,000 on SQLite) for 100 keys is
generated in the database itself (``generate_series`` / a recursive CTE): four models, half of the
calls streamed, 3 % errors of four classes, log-normal latencies around 900 ms, key shares skewed.
Then: a full recompute (first run, no watermark), and a tick after 10,000 new calls arrive in the
minute after the watermark (its late window reaches back into the day's last hour, so that hour
is recomputed too). Baseline: a bare ``SELECT count(*), sum(total_tokens)`` over the same rows.

Postgres runs in a throwaway database (``--postgres``, default ``lcm_bench`` on 127.0.0.1),
dropped at the end unless ``--keep``; an existing one with the right row count is reused.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, event, text

from bench.common import machine, print_table
from monitor.config import load_settings
from monitor.ledger.quota_day import day_bounds
from monitor.ledger.rollup import run_rollup
from monitor.store.engine import make_engine, upgrade

DAY = date(2026, 11, 20)
KEYS = 100
NEW_CALLS = 10_000
TARGET_FULL_S = 10.0
TARGET_TICK_S = 0.2
ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

_COLUMNS = (
    "event_id, started_at, key_id, key_hint, api, method, endpoint, model, stream, status_code, "
    "error_type, latency_ms, ttft_ms, input_tokens, output_tokens, total_tokens, "
    "cache_read_tokens, reasoning_tokens, usage_source, attempt, labels, source, host"
)

#: One call per row of ``numbers`` (column ``g``), spread over ``span`` seconds from ``start``.
#: ``{rand}`` is a uniform [0, 1) expression, ``{time}`` turns seconds from start into a timestamp.
_CALLS = """
SELECT
    '{prefix}' || g, {time}, 'bench-key-' || k, 'k' || k,
    'openai', 'POST', '/openai/v1/chat/completions', model, stream,
    CASE err WHEN 'rate_limit' THEN 429 WHEN 'server_error' THEN 500
             WHEN 'bad_request' THEN 400 ELSE 200 END,
    err, latency,
    CASE WHEN stream THEN latency * (0.05 + 0.25 * r6) END,
    CASE WHEN billed THEN input END,
    CASE WHEN billed THEN output END,
    CASE WHEN billed THEN input + output END,
    CASE WHEN billed THEN CAST(input * r7 * 0.3 AS INTEGER) END,
    CASE WHEN billed AND model = 'LongCat-Flash-Thinking' THEN output / 2 END,
    'reported', 0, '{{}}', 'sdk', 'bench'
FROM (
    SELECT g, r1, r6, r7, k, stream, err, model,
        err IS NULL OR err IN ('stream_interrupted', 'bad_request') AS billed,
        exp(ln(900) + 0.7 * sqrt(-2 * ln(1 - r4)) * cos(2 * pi() * r5)) AS latency,
        100 + CAST(r8 * 3000 AS INTEGER) AS input, 20 + CAST(r9 * 800 AS INTEGER) AS output
    FROM (
        SELECT g, r1, r4, r5, r6, r7, r8, r9, stream, model,
            CAST(power(rk, 1.5) * {keys} AS INTEGER) AS k,
            CASE WHEN r3 < 0.015 THEN 'rate_limit' WHEN r3 < 0.02 THEN 'server_error'
                 WHEN r3 < 0.025 THEN 'stream_interrupted' WHEN r3 < 0.03 THEN 'bad_request'
            END AS err
        FROM (
            SELECT g, {rand} r1, {rand} r3, {rand} r4, {rand} r5, {rand} r6, {rand} r7,
                {rand} r8, {rand} r9, {rand} rk, {rand} < 0.5 AS stream,
                CASE CAST({rand} * 4 AS INTEGER) WHEN 0 THEN 'LongCat-Flash-Thinking'
                    WHEN 1 THEN 'LongCat-Flash-Lite' ELSE 'LongCat-Flash-Chat' END AS model
            FROM numbers
        ) s0
    ) s1
) s2
"""


def postgres_calls(n: int, start: datetime, span_s: float, prefix: str) -> str:
    body = _CALLS.format(
        prefix=prefix,
        keys=KEYS,
        rand="random()",
        time=f"timestamptz '{start.isoformat()}' "
        f"+ make_interval(secs => (g - 1 + r1) * {span_s / n})",
    ).replace("CAST(input * r7 * 0.3 AS INTEGER)", "floor(input * r7 * 0.3)::int")
    body = body.replace("CAST(r8", "floor(r8").replace("CAST(r9", "floor(r9")
    body = body.replace("* 3000 AS INTEGER)", "* 3000)::int").replace(
        "* 800 AS INTEGER)", "* 800)::int"
    )
    body = body.replace("'{}'", "'{}'::jsonb")
    return (
        f"WITH numbers AS (SELECT g FROM generate_series(1, {n}) g) "
        f"INSERT INTO api_calls ({_COLUMNS}) {body}"
    )


def sqlite_calls(n: int, start: datetime, span_s: float, prefix: str) -> str:
    origin = start.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    body = _CALLS.format(
        prefix=prefix,
        keys=KEYS,
        rand="((random() / 18446744073709551616.0) + 0.5)",
        time=f"strftime('%Y-%m-%d %H:%M:%f000', '{origin}', "
        f"'+' || ((g - 1 + r1) * {span_s / n}) || ' seconds')",
    )
    return (
        f"WITH RECURSIVE numbers(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM numbers "
        f"WHERE g < {n}) INSERT INTO api_calls ({_COLUMNS}) {body}"
    )


def generate(engine: Engine, n: int, start: datetime, span_s: float, prefix: str) -> None:
    build = postgres_calls if engine.dialect.name == "postgresql" else sqlite_calls
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            from monitor.store.partitions import create_day_partition

            for offset in range(-1, 2):
                create_day_partition(conn, (start + timedelta(days=offset)).date())
        conn.exec_driver_sql(
            build(n, start, span_s, prefix).replace("%", "%%")
            if engine.dialect.name == "postgresql"
            else build(n, start, span_s, prefix)
        )
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql(
            "ANALYZE api_calls" if engine.dialect.name == "postgresql" else "ANALYZE"
        )


def count_calls(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM api_calls")).scalar_one())


@contextmanager
def statement_times(engine: Engine) -> Iterator[list[tuple[float, str]]]:
    """Collects (seconds, the statement's start) of every statement ``engine`` runs meanwhile,
    on any of its connections (a full recompute aggregates hours on two at once)."""
    times: list[tuple[float, str]] = []

    def before(conn: Any, *_: Any) -> None:
        conn.info["lcm_bench_began"] = time.perf_counter()

    def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        began = conn.info.pop("lcm_bench_began", None)
        if began is not None:
            times.append((time.perf_counter() - began, " ".join(statement.split())[:90]))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield times
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)


def print_slowest(title: str, total_s: float, times: list[tuple[float, str]], most: int) -> None:
    print(
        f"\n{title}: {total_s:.2f} s in all; {len(times)} statements took "
        f"{sum(t for t, _ in times):.2f} s (two at a time in part); the slowest:"
    )
    for seconds, statement in sorted(times, reverse=True)[:most]:
        print(f"  {seconds:7.3f} s  {statement}")


def timed(fn: object) -> float:
    begin = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - begin


def run(url: str, n: int, rounds: int, statements: int = 0) -> list[list[str]]:
    engine = make_engine(url)
    upgrade(engine)
    settings = load_settings(database_url=url)
    day_start, day_end = day_bounds(DAY, settings.tz)
    if count_calls(engine) < n:
        begin = time.perf_counter()
        generate(engine, n, day_start, (day_end - day_start).total_seconds(), "bench")
        print(
            f"{engine.dialect.name}: generated {n:,} calls in {time.perf_counter() - begin:.0f} s"
        )

    def baseline() -> None:
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*), sum(total_tokens) FROM api_calls")).one()

    def full() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM rollup_state")
        result = run_rollup(engine, settings, now=day_end + timedelta(minutes=5))
        assert result.hours > 0 and result.days > 0

    base_s = min(timed(baseline) for _ in range(rounds))
    full_s = min(timed(full) for _ in range(rounds))
    ticks = []
    for r in range(rounds):
        at = day_end + timedelta(minutes=5 + r)
        generate(engine, NEW_CALLS, at, 60.0, f"tick{time.time_ns()}-")
        ticks.append(
            timed(lambda at=at: run_rollup(engine, settings, now=at + timedelta(minutes=1)))
        )
    tick_s = min(ticks)
    if statements:  # one more of each, its statements timed (not counted in the table)
        with statement_times(engine) as times:
            total = timed(full)
        print_slowest(f"{engine.dialect.name} full recompute", total, times, statements)
        at = day_end + timedelta(minutes=5 + rounds)
        generate(engine, NEW_CALLS, at, 60.0, f"tick{time.time_ns()}-")
        with statement_times(engine) as times:
            total = timed(lambda: run_rollup(engine, settings, now=at + timedelta(minutes=1)))
        print_slowest(f"{engine.dialect.name} tick", total, times, statements)
    engine.dispose()
    name = engine.dialect.name
    return [
        [name, f"{n:,}", "baseline count+sum", f"{base_s:.2f}", "", "1.0x"],
        [
            name,
            f"{n:,}",
            "full recompute",
            f"{full_s:.2f}",
            f"{TARGET_FULL_S:.1f}",
            f"{full_s / base_s:.1f}x",
        ],
        [
            name,
            f"+{NEW_CALLS:,}",
            "incremental tick",
            f"{tick_s:.3f}",
            f"{TARGET_TICK_S:.1f}",
            f"{tick_s / base_s:.2f}x",
        ],
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10_000_000, help="calls in the Postgres day")
    parser.add_argument("--sqlite-calls", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of this many")
    parser.add_argument("--postgres", default="lcm_bench", help="throwaway database name")
    parser.add_argument("--keep", action="store_true", help="keep the Postgres database")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--statements",
        type=int,
        default=0,
        metavar="N",
        help="then one more full recompute and tick, printing their N slowest statements",
    )
    args = parser.parse_args(argv)
    rows: list[list[str]] = []
    if not args.skip_postgres:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (args.postgres,)
            ).fetchone()
            if not exists:
                admin.execute(f'CREATE DATABASE "{args.postgres}"')
        try:
            rows += run(
                f"postgresql://postgres@127.0.0.1:5432/{args.postgres}",
                args.calls,
                args.rounds,
                args.statements,
            )
        finally:
            if not args.keep:
                with psycopg.connect(ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{args.postgres}" WITH (FORCE)')
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            rows += run(
                f"sqlite:///{Path(tmp) / 'bench.db'}",
                args.sqlite_calls,
                args.rounds,
                args.statements,
            )
    print_table(
        f"Rollups: best of {args.rounds}, seconds ({machine()}); "
        f"targets on Postgres: full day < {TARGET_FULL_S:.0f} s, "
        f"tick < {TARGET_TICK_S * 1000:.0f} ms",
        ["database", "calls", "what", "seconds", "target s", "vs baseline"],
        rows,
    )


if __name__ == "__main__":
    main()
