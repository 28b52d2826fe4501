"""The dashboard summaries the rollup keeps: equal to ``hourly_usage`` summed over keys."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from monitor.config import Settings
from monitor.ledger.rollup import run_rollup
from monitor.queries import endpoint_choices, model_choices
from monitor.records import CallRecord
from monitor.store.calls import insert_calls
from monitor.store.engine import downgrade, upgrade
from monitor.store.models import ErrorsByHour, HourlyUsage, UsageByHour
from monitor.store.summaries import LABEL, seen_values

START = datetime(2026, 11, 25, 13, 0, tzinfo=UTC)
MODELS = ["LongCat-Flash-Chat", "LongCat-Flash-Thinking", None]
ERRORS = [None, None, "rate_limit", "stream_interrupted", "server_error"]


def calls(start: datetime, n: int, **fields: Any) -> list[CallRecord]:
    """``n`` calls a few minutes apart: three keys, three models, streams, errors, latencies."""
    records = []
    for i in range(n):
        values: dict[str, Any] = {
            "api": "openai",
            "endpoint": "/openai/v1/chat/completions",
            "key_id": f"k_{i % 3}",
            "key_hint": f"h{i % 3}",
            "model": MODELS[i % 3],
            "stream": i % 4 == 0,
            "status_code": 200,
            "error_type": ERRORS[i % 5],
            "latency_ms": 40.0 + 13 * i,
            "ttft_ms": 10.0 + i if i % 4 == 0 else None,
            "input_tokens": 100 + i,
            "output_tokens": 5 * i,
            "total_tokens": 100 + 6 * i,
        }
        values.update(fields)
        records.append(CallRecord(started_at=start + timedelta(minutes=7 * i), **values))
    return records


def insert(engine: Engine, records: list[CallRecord]) -> None:
    with engine.begin() as conn:
        insert_calls(conn, records)


def summed_hourly_usage(engine: Engine) -> tuple[dict[Any, list[Any]], dict[Any, int]]:
    """``hourly_usage`` summed over keys in Python: figures, and errors per class."""
    figures: dict[Any, list[Any]] = defaultdict(lambda: [0] * 7 + [0.0, 0] * 2)
    errors: Counter[Any] = Counter()
    with engine.connect() as conn:
        for row in conn.execute(select(HourlyUsage.__table__)):
            group = (row.hour, row.model, row.stream)
            sums = figures[group]
            for i, name in enumerate(
                [
                    "requests",
                    "errors",
                    "input_tokens",
                    "output_tokens",
                    "cache_read_tokens",
                    "reasoning_tokens",
                    "total_tokens",
                ]
            ):
                sums[i] += getattr(row, name)
            for i, name in enumerate(["latency_p50_ms", "ttft_p95_ms"]):
                if getattr(row, name) is not None:
                    sums[7 + 2 * i] += getattr(row, name) * row.requests
                    sums[8 + 2 * i] += row.requests
            for error_class, n in row.errors_by_class.items():
                errors[(*group, error_class)] += n
    return dict(figures), dict(errors)


def summaries(engine: Engine) -> tuple[dict[Any, list[Any]], dict[Any, int]]:
    with engine.connect() as conn:
        figures = {
            (r.hour, r.model, r.stream): [
                r.requests,
                r.errors,
                r.input_tokens,
                r.output_tokens,
                r.cache_read_tokens,
                r.reasoning_tokens,
                r.total_tokens,
                r.latency_p50_ms_weighted or 0.0,
                r.latency_p50_ms_weight,
                r.ttft_p95_ms_weighted or 0.0,
                r.ttft_p95_ms_weight,
            ]
            for r in conn.execute(select(UsageByHour.__table__))
        }
        errors = {
            (r.hour, r.model, r.stream, r.error_class): r.errors
            for r in conn.execute(select(ErrorsByHour.__table__))
        }
    return figures, errors


def assert_summaries_match(engine: Engine) -> None:
    expected_figures, expected_errors = summed_hourly_usage(engine)
    figures, errors = summaries(engine)
    assert figures.keys() == expected_figures.keys()
    for group, values in figures.items():
        assert values == pytest.approx(expected_figures[group]), group
    assert errors == expected_errors


def test_summaries_follow_every_rollup(engine: Engine, settings: Settings) -> None:
    insert(engine, calls(START, 60))
    run_rollup(engine, settings, now=START + timedelta(hours=8))
    assert_summaries_match(engine)
    figures, errors = summaries(engine)
    assert len(figures) > 10 and errors  # several hours, models and modes; errors by class

    # New calls in a later hour, and one landing late in the last rolled-up hour.
    late = START + timedelta(hours=7, minutes=55)
    insert(engine, calls(START + timedelta(hours=8), 20) + calls(late, 1, error_type="auth"))
    run_rollup(engine, settings, now=START + timedelta(hours=11))
    assert_summaries_match(engine)
    _, errors = summaries(engine)
    assert any(group[3] == "auth" for group in errors)


def test_migration_fills_the_summaries_from_what_is_there(
    engine: Engine, settings: Settings
) -> None:
    insert(engine, calls(START, 30, labels={"team": "search"}))
    run_rollup(engine, settings, now=START + timedelta(hours=5))
    before = summaries(engine)
    downgrade(engine, "0005_rollup_histograms")
    upgrade(engine)
    assert summaries(engine)[0].keys() == before[0].keys()
    assert_summaries_match(engine)
    with engine.connect() as conn:
        assert seen_values(conn, LABEL) == ["team"]
        assert endpoint_choices(conn, START) == ["/openai/v1/chat/completions"]


def test_choices_come_from_the_values_seen(engine: Engine, settings: Settings) -> None:
    insert(engine, calls(START, 6, labels={"feature": "reports"}))
    old = START - timedelta(days=100)
    insert(engine, calls(old, 2, endpoint="/anthropic/v1/messages", labels={"old": "x"}))
    run_rollup(engine, settings, now=START + timedelta(hours=1))
    with engine.connect() as conn:
        # The endpoint last called 100 days ago is past the 90-day lookback.
        assert endpoint_choices(conn, START + timedelta(hours=1)) == ["/openai/v1/chat/completions"]
        assert seen_values(conn, LABEL) == ["feature", "old"]
        assert seen_values(conn, LABEL, since=START - timedelta(days=1)) == ["feature"]
        assert model_choices(conn) == ["", "LongCat-Flash-Chat", "LongCat-Flash-Thinking"]
    # A later call to the old endpoint brings it back.
    later = START + timedelta(hours=2)
    insert(engine, calls(later, 1, endpoint="/anthropic/v1/messages"))
    run_rollup(engine, settings, now=later + timedelta(minutes=5))
    with engine.connect() as conn:
        assert endpoint_choices(conn, later) == [
            "/anthropic/v1/messages",
            "/openai/v1/chat/completions",
        ]


def test_a_tick_notes_what_its_late_window_holds(engine: Engine, settings: Settings) -> None:
    insert(engine, calls(START, 6, labels={"team": "search"}))
    watermark = START + timedelta(minutes=40)
    run_rollup(engine, settings, now=watermark)
    # Late, inside the late window, in five minutes whose keyed calls are all rolled up already:
    # a call without a key (counted in no rollup row), and a keyed call in a new slice.
    insert(
        engine,
        calls(START + timedelta(minutes=35), 1, key_id=None, endpoint="/anthropic/v1/messages")
        + calls(START + timedelta(minutes=31), 1, labels={"feature": "reports"}),
    )
    run_rollup(engine, settings, now=watermark + timedelta(minutes=1))
    with engine.connect() as conn:
        assert endpoint_choices(conn, watermark) == [
            "/anthropic/v1/messages",
            "/openai/v1/chat/completions",
        ]
        assert seen_values(conn, LABEL) == ["feature", "team"]
    assert_summaries_match(engine)
