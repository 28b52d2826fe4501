"""Database outage: Postgres stops while the app keeps calling; nothing slows, fails or is lost.

The outage lasts ``LCM_OUTAGE_SECONDS`` (default 6; the issue's minute is the same code path).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest
from pg_cluster import PostgresCluster
from sqlalchemy import text
from waiting import eventually

import monitor
from monitor.recording.recorder import Recorder
from monitor.recording.spool import Spool
from monitor.recording.sql_sink import SqlSink
from monitor.simulator import RunningSimulator, SimulatorOptions
from monitor.store.engine import make_engine

OUTAGE_S = float(os.environ.get("LCM_OUTAGE_SECONDS", "6"))
BASELINE_S = 2.0
KEY = "sk-outage-test-0000000000000001"
BODY = {"model": "LongCat-Flash-Chat", "messages": [{"role": "user", "content": "hi"}]}


def rows_and_distinct(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), count(DISTINCT event_id) FROM api_calls"))
            total, distinct = row.one()
            return int(total), int(distinct)
    finally:
        engine.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.mark.slow
def test_postgres_outage_is_invisible_to_the_app_and_loses_nothing(
    pg_cluster: PostgresCluster, tmp_path: Path
) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=50_000_000)
    recorder = Recorder(
        SqlSink(pg_cluster.url),
        batch_size=50,
        flush_interval_s=0.1,
        spool=spool,
        retry_interval_s=0.5,
    )
    phase = "baseline"
    latencies: dict[str, list[float]] = {"baseline": [], "outage": [], "after": []}
    errors: list[BaseException] = []
    stop = threading.Event()

    with RunningSimulator(SimulatorOptions(latency_ms=2)) as sim:
        client = monitor.instrument(httpx.Client(base_url=sim.base_url), recorder=recorder)

        def app() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    response = client.post(
                        "/openai/v1/chat/completions",
                        json=BODY,
                        headers={"authorization": f"Bearer {KEY}"},
                    )
                    response.raise_for_status()
                except BaseException as exc:  # anything at all reaching the app fails the test
                    errors.append(exc)
                    return
                latencies[phase].append(time.perf_counter() - started)

        thread = threading.Thread(target=app)
        thread.start()
        try:
            time.sleep(BASELINE_S)
            phase = "outage"
            pg_cluster.stop()
            time.sleep(OUTAGE_S)
            pg_cluster.start()
            phase = "after"
            time.sleep(BASELINE_S)
        finally:
            stop.set()
            thread.join(30)
            client.close()

    assert errors == []
    made = sum(len(v) for v in latencies.values())
    assert recorder.flush(timeout=30)
    eventually(
        lambda: not (spool.size or recorder.stats().queued),
        interval=0.1,
        what="the spool to be replayed",
    )
    stats = recorder.stats()
    recorder.shutdown(timeout=10)
    assert stats.spooled > 0, "the outage never reached the writer"
    assert (stats.lost, stats.dropped, stats.spool_dropped) == (0, 0, 0)
    assert rows_and_distinct(pg_cluster.url) == (made, made)

    base, out = latencies["baseline"], latencies["outage"]
    figures = {
        name: (len(v), statistics.median(v) * 1000, percentile(v, 0.99) * 1000)
        for name, v in latencies.items()
    }
    print("calls, median ms, p99 ms by phase:", figures, "spooled", stats.spooled)
    # No slowdown: the outage's median within noise of the baseline's, no call stuck on the DB.
    assert statistics.median(out) < statistics.median(base) * 1.5 + 0.002
    assert percentile(out, 0.99) < percentile(base, 0.99) * 3 + 0.010
    assert max(out) < 0.5
