"""The pure arithmetic of the rollups (the job is tested in tests/store/test_rollup_job.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor.ledger.totals import (
    CallFacts,
    billed_tokens,
    counts_toward_quota,
    group_daily,
    group_hourly,
    percentile,
    recompute_span,
    summarize,
)
from monitor.records import ERROR_TYPES, UNBILLED_ERROR_TYPES

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)


def call(**fields: object) -> CallFacts:
    values: dict[str, object] = {"started_at": T0, "key_id": "k_a"}
    values.update(fields)
    return CallFacts(**values)  # type: ignore[arg-type]


def test_unbilled_error_classes_do_not_count() -> None:
    for error_type in ERROR_TYPES:
        assert counts_toward_quota(error_type) is (error_type not in UNBILLED_ERROR_TYPES)
    assert counts_toward_quota(None)


def test_billed_tokens_prefers_total_and_falls_back_to_input_plus_output() -> None:
    assert billed_tokens(call(input_tokens=10, output_tokens=5, total_tokens=16)) == 16
    assert billed_tokens(call(input_tokens=10, output_tokens=5)) == 15
    assert billed_tokens(call()) == 0
    assert billed_tokens(call(error_type="rate_limit", total_tokens=99)) == 0


def test_percentile_matches_percentile_cont() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([10, 20, 30, 40], 0.5) == 25.0
    # percentile_cont(0.95) over 1..100 = 1 + 0.95 * 99
    assert percentile(list(range(100, 0, -1)), 0.95) == pytest.approx(95.05)
    with pytest.raises(ValueError):
        percentile([1.0], 1.5)


def test_summarize_counts_errors_but_not_their_tokens() -> None:
    totals = summarize(
        [
            call(input_tokens=100, output_tokens=50, total_tokens=150, latency_ms=100.0),
            call(error_type="rate_limit", total_tokens=1000, latency_ms=5.0),
            call(error_type="server_error", input_tokens=70, latency_ms=9.0),
            call(
                error_type="stream_interrupted",
                input_tokens=30,
                output_tokens=3,
                total_tokens=33,
                cache_read_tokens=8,
                reasoning_tokens=2,
                ttft_ms=40.0,
            ),
            call(error_type="rate_limit"),
        ]
    )
    assert totals.requests == 5
    assert totals.errors == 4
    assert totals.errors_by_class == {"rate_limit": 2, "server_error": 1, "stream_interrupted": 1}
    assert totals.total_tokens == 183
    assert totals.input_tokens == 130
    assert totals.output_tokens == 53
    assert totals.cache_read_tokens == 8
    assert totals.reasoning_tokens == 2
    assert totals.latency_p50_ms == 9.0
    assert totals.ttft_p50_ms == totals.ttft_p95_ms == 40.0


def test_empty_group() -> None:
    totals = summarize([])
    assert (totals.requests, totals.total_tokens, totals.latency_p50_ms) == (0, 0, None)


def test_daily_groups_split_at_beijing_midnight() -> None:
    before = call(started_at=datetime(2026, 11, 25, 15, 59, 59, tzinfo=UTC), total_tokens=1)
    after = call(started_at=datetime(2026, 11, 25, 16, 0, 0, tzinfo=UTC), total_tokens=2)
    other_key = call(key_id="k_b", started_at=after.started_at, total_tokens=4)
    groups = group_daily([before, after, other_key], SHANGHAI)
    assert {k: t.total_tokens for k, t in groups.items()} == {
        ("k_a", date(2026, 11, 25)): 1,
        ("k_a", date(2026, 11, 26)): 2,
        ("k_b", date(2026, 11, 26)): 4,
    }


def test_hourly_groups_by_model_and_stream() -> None:
    hour = datetime(2026, 11, 25, 15, tzinfo=UTC)
    groups = group_hourly(
        [
            call(model="LongCat-Flash-Chat", total_tokens=1),
            call(model="LongCat-Flash-Chat", total_tokens=2, started_at=T0 + timedelta(minutes=20)),
            call(model="LongCat-Flash-Chat", stream=True, total_tokens=4),
            call(model=None, total_tokens=8),
            call(model="LongCat-Flash-Chat", total_tokens=16, started_at=T0 + timedelta(hours=1)),
        ]
    )
    assert {k: t.total_tokens for k, t in groups.items()} == {
        ("k_a", hour, "LongCat-Flash-Chat", False): 3,
        ("k_a", hour, "LongCat-Flash-Chat", True): 4,
        ("k_a", hour, "", False): 8,
        ("k_a", hour + timedelta(hours=1), "LongCat-Flash-Chat", False): 16,
    }


def test_recompute_span_covers_whole_hours() -> None:
    assert recompute_span(date(2026, 11, 26), SHANGHAI) == (
        datetime(2026, 11, 25, 16, tzinfo=UTC),
        datetime(2026, 11, 26, 16, tzinfo=UTC),
    )
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+5:30: a day starts at hh:30 UTC
    assert recompute_span(date(2026, 11, 26), kolkata) == (
        datetime(2026, 11, 25, 18, tzinfo=UTC),
        datetime(2026, 11, 26, 19, tzinfo=UTC),
    )
