"""Recorder throughput: call records written per second through Recorder + SqlSink.

N records (built beforehand, not timed) are submitted to a Recorder whose queue holds them all,
then flushed; the figure is records / wall seconds until the flush returns. Baselines in the same
run, same rows, same batch size, one transaction per batch: the driver's own ``executemany`` of
the same ``INSERT … ON CONFLICT DO NOTHING`` (sqlite3 / psycopg), and on Postgres a bare ``COPY``
(no conflict check: an upper bound, not exactly-once). SQLite: a file in a temporary folder;
Postgres: a throwaway database, dropped at the end. ``--baseline-tree DIR`` adds Recorder +
SqlSink on SQLite from another checkout (``git archive REV | tar -x -C DIR``) and from this one,
each in its own process, the two taking turns, so both see the same machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from bench.common import machine, median, print_table
from monitor.recording.recorder import Recorder
from monitor.recording.sql_sink import SqlSink
from monitor.records import CallRecord, new_event_id
from monitor.store import calls
from monitor.store.engine import make_engine, upgrade

ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
# Targets, as ratios to the bare driver of the same run (issue 17): an absolute rate on SQLite
# measured the machine, not the recorder.
SQLITE_VS_EXECUTEMANY = 0.9
POSTGRES_RATE = 50_000
POSTGRES_VS_COPY = 0.7
TARGETS_TEXT = (
    f"targets: SQLite >= {SQLITE_VS_EXECUTEMANY}x sqlite3 executemany; "
    f"Postgres >= {POSTGRES_RATE:,}/s and >= {POSTGRES_VS_COPY}x a bare COPY"
)


def records(n: int) -> list[CallRecord]:
    start = datetime.now(UTC) - timedelta(hours=1)
    return [
        CallRecord(
            started_at=start + timedelta(microseconds=i * 300),
            api="openai",
            endpoint="/openai/v1/chat/completions",
            key_id=f"bench-key-{i % 100:03d}",
            key_hint=f"{i % 100:04d}",
            model="LongCat-Flash-Chat",
            stream=i % 2 == 0,
            status_code=200,
            latency_ms=850.0 + i % 400,
            ttft_ms=120.0 if i % 2 == 0 else None,
            input_tokens=1200,
            output_tokens=300,
            total_tokens=1500,
            usage_source="reported",
            labels={"feature": "bench"},
        )
        for i in range(n)
    ]


def fresh(rows: list[CallRecord]) -> list[CallRecord]:
    """The same rows with new event ids (each measurement inserts, never skips)."""
    return [CallRecord(**{**vars_of(r), "event_id": new_event_id()}) for r in rows]


def vars_of(record: CallRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in calls.RECORD_FIELDS}


def through_recorder(url: str, rows: list[CallRecord], batch: int) -> float:
    sink = SqlSink(url)
    sink.write(rows[:1])  # schema check and connection outside the timing
    recorder = Recorder(sink, max_queue=len(rows) + 1, batch_size=batch, flush_interval_s=0.05)
    begin = time.perf_counter()
    for record in rows[1:]:
        recorder.submit(record)
    recorder.flush(600)
    elapsed = time.perf_counter() - begin
    recorder.shutdown(10)
    sink.close()
    return (len(rows) - 1) / elapsed


def driver_rows(dialect: str, rows: list[CallRecord]) -> list[tuple[Any, ...]]:
    """The tuples insert_calls would send, built outside the timing."""
    return calls.driver_rows(dialect, rows, "bench")


def built_per_second(dialect: str, rows: list[CallRecord]) -> float:
    """Records a second that ``insert_calls`` turns into driver rows, the part of its work done
    in Python before the database sees anything."""
    begin = time.perf_counter()
    driver_rows(dialect, rows)
    return len(rows) / (time.perf_counter() - begin)


def insert_sql(dialect: str) -> str:
    """The INSERT the SQLite path runs (Postgres: the same, with psycopg's placeholders)."""
    if dialect == "sqlite":
        return calls.SQLITE_INSERT
    marks = ", ".join(["%s"] * len(calls.COLUMNS))
    return (
        f"INSERT INTO api_calls ({', '.join(calls.COLUMNS)}) VALUES ({marks}) "
        f"ON CONFLICT ({calls.CONFLICT_TARGET['postgresql']}) DO NOTHING"
    )


def sqlite_executemany(path: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    sql = insert_sql("sqlite")
    begin = time.perf_counter()
    for i in range(0, len(rows), batch):
        with conn:
            conn.executemany(sql, rows[i : i + batch])
    elapsed = time.perf_counter() - begin
    conn.close()
    return len(rows) / elapsed


def postgres_executemany(dsn: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    sql = insert_sql("postgresql")
    with psycopg.connect(dsn) as conn:
        begin = time.perf_counter()
        for i in range(0, len(rows), batch):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(sql, rows[i : i + batch])
        return len(rows) / (time.perf_counter() - begin)


def postgres_copy(dsn: str, rows: list[tuple[Any, ...]], batch: int) -> float:
    with psycopg.connect(dsn) as conn:
        begin = time.perf_counter()
        for i in range(0, len(rows), batch):
            copy_sql = f"COPY api_calls ({', '.join(calls.COLUMNS)}) FROM STDIN"
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for row in rows[i : i + batch]:
                    copy.write_row(row)
        return len(rows) / (time.perf_counter() - begin)


#: One Recorder + SqlSink run on a fresh SQLite file, in the process of a source tree: the
#: names it imports are in every tree of this benchmark.
TURN_CODE = """
import sys, tempfile
from pathlib import Path
from bench.recorder_throughput import fresh, records, through_recorder
from monitor.store.engine import make_engine, upgrade
n, batch = int(sys.argv[1]), int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    url = f"sqlite:///{Path(tmp) / 'bench.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    print(through_recorder(url, fresh(records(n)), batch))
"""


def sqlite_turn(tree: Path, n: int, batch: int) -> float:
    """Records/s of Recorder + SqlSink on SQLite, with ``monitor`` imported from ``tree``."""
    done = subprocess.run(
        [sys.executable, "-c", TURN_CODE, str(n), str(batch)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.split()[-1])


def compare_trees(baseline: Path, n: int, batch: int, rounds: int) -> list[list[str]]:
    """Rows of the baseline tree's and this tree's runs, taking turns ``rounds`` times."""
    here = Path(__file__).resolve().parent.parent
    runs: dict[Path, list[float]] = {baseline: [], here: []}
    for _ in range(rounds):
        for tree, rates in runs.items():
            rates.append(sqlite_turn(tree, n, batch))
    base = median(runs[baseline])
    return [
        [
            label,
            f"{min(rates):,.0f} to {max(rates):,.0f}",
            f"{median(rates):,.0f}",
            f"{median(rates) / base:.2f}x",
        ]
        for label, rates in ((f"baseline {baseline}", runs[baseline]), ("this tree", runs[here]))
    ]


def fresh_table(dialect: str, template: str, target: str) -> None:
    """An empty migrated ``api_calls`` for the next measurement: a copy of the migrated SQLite
    file, or the Postgres table emptied, so no writer runs against a table others have grown."""
    if dialect == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(target + suffix).unlink(missing_ok=True)
        shutil.copyfile(template, target)
    else:
        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute("TRUNCATE api_calls")


def interleaved(
    rounds: int, reset: Callable[[], None], writers: dict[str, Callable[[], float]]
) -> dict[str, float]:
    """The median of each writer over ``rounds``, the writers taking turns within each round,
    each on an empty table: the machine's drift and the table's size favour none of them."""
    rates: dict[str, list[float]] = {name: [] for name in writers}
    for _ in range(rounds):
        for name, writer in writers.items():
            reset()
            rates[name].append(writer())
    return {name: median(values) for name, values in rates.items()}


def run(
    dialect: str, url: str, dsn: str, n: int, batches: list[int], rounds: int
) -> list[list[str]]:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    template = ""
    if dialect == "sqlite":
        template = dsn + ".migrated"
        shutil.copyfile(dsn, template)
    base = records(n)
    rows = []
    building = median([built_per_second(dialect, fresh(base)) for _ in range(rounds)])
    rows.append([dialect, "-", "rows built from records (no database)", f"{building:,.0f}", "", ""])
    driver = "sqlite3 executemany" if dialect == "sqlite" else "psycopg executemany"
    for batch in batches:
        writers: dict[str, Callable[[], float]] = {}
        if dialect == "sqlite":
            writers[driver] = lambda b=batch: sqlite_executemany(
                dsn, driver_rows("sqlite", fresh(base)), b
            )
        else:
            writers[driver] = lambda b=batch: postgres_executemany(
                dsn, driver_rows("postgresql", fresh(base)), b
            )
            writers["bare COPY (no dedup)"] = lambda b=batch: postgres_copy(
                dsn, driver_rows("postgresql", fresh(base)), b
            )
        writers["Recorder + SqlSink"] = lambda b=batch: through_recorder(url, fresh(base), b)
        rates = interleaved(rounds, lambda: fresh_table(dialect, template, dsn), writers)
        baseline, ours = rates[driver], rates["Recorder + SqlSink"]
        rows.append([dialect, str(batch), driver, f"{baseline:,.0f}", "1.00x", ""])
        if dialect == "sqlite":
            ok = ours >= SQLITE_VS_EXECUTEMANY * baseline
            verdict = f"{'pass' if ok else 'miss'} ({ours / baseline:.2f}x executemany)"
        else:
            copy = rates["bare COPY (no dedup)"]
            rows.append(
                [
                    dialect,
                    str(batch),
                    "bare COPY (no dedup)",
                    f"{copy:,.0f}",
                    f"{copy / baseline:.2f}x",
                    "",
                ]
            )
            ok = ours >= POSTGRES_RATE and ours >= POSTGRES_VS_COPY * copy
            verdict = f"{'pass' if ok else 'miss'} ({ours:,.0f}/s, {ours / copy:.2f}x COPY)"
        rows.append(
            [
                dialect,
                str(batch),
                "Recorder + SqlSink",
                f"{ours:,.0f}",
                f"{ours / baseline:.2f}x",
                verdict,
            ]
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument(
        "--batches", default="500,2000,5000", help="batch sizes (2000 is the default)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="median of this many")
    parser.add_argument("--postgres", default="lcm_bench_recorder", help="throwaway database")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument(
        "--baseline-tree", type=Path, help="another checkout's Recorder + SqlSink on SQLite too"
    )
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    out: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        out += run("sqlite", f"sqlite:///{path}", path, args.records, batches, args.rounds)
    if not args.skip_postgres:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{args.postgres}"')
            admin.execute(f'CREATE DATABASE "{args.postgres}"')
        try:
            dsn = f"host=127.0.0.1 port=5432 user=postgres dbname={args.postgres}"
            url = f"postgresql://postgres@127.0.0.1:5432/{args.postgres}"
            out += run("postgresql", url, dsn, args.records, batches, args.rounds)
        finally:
            with psycopg.connect(ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.postgres}" WITH (FORCE)')
    print_table(
        f"Recorder throughput: records/s, median of {args.rounds} x {args.records:,} "
        f"({machine()}); {TARGETS_TEXT}",
        ["database", "batch", "writer", "records/s", "vs baseline", "target"],
        out,
    )
    if args.baseline_tree is not None:
        batch = batches[-1]
        print_table(
            f"Recorder + SqlSink on SQLite, two trees taking turns {args.rounds} times, "
            f"batch {batch:,}, {args.records:,} records",
            ["tree", "records/s", "median", "vs baseline tree"],
            compare_trees(args.baseline_tree.resolve(), args.records, batch, args.rounds),
        )


if __name__ == "__main__":
    main()
