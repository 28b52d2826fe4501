"""The burn-rate forecast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.alerts.forecast import forecast_exhaustion, recent_window_start

DAY_START = datetime(2026, 3, 9, 16, tzinfo=UTC)  # 00:00 Beijing, 10 March
H = timedelta(hours=1)


def test_rate_over_previous_and_current_hour() -> None:
    now = DAY_START + 5 * H + timedelta(minutes=30)
    hourly = [
        (DAY_START + 3 * H, 900_000),
        (DAY_START + 4 * H, 60_000),
        (DAY_START + 5 * H, 30_000),
    ]
    f = forecast_exhaustion(200_000, 500_000, hourly, now, DAY_START)
    assert f is not None
    assert f.since == DAY_START + 4 * H
    # 90,000 tokens in 90 minutes: 60,000/hour; 300,000 left → 5 hours.
    assert round(f.tokens_per_hour) == 60_000
    assert f.exhaust_at == now + 5 * H


def test_window_never_reaches_into_yesterday() -> None:
    now = DAY_START + timedelta(minutes=30)
    assert recent_window_start(now, DAY_START) == DAY_START
    hourly = [(DAY_START - H, 1_000_000), (DAY_START, 50_000)]
    f = forecast_exhaustion(50_000, 500_000, hourly, now, DAY_START)
    assert f is not None and round(f.tokens_per_hour) == 100_000


def test_too_early_in_the_day_no_forecast() -> None:
    assert (
        forecast_exhaustion(
            1000, 500_000, [(DAY_START, 1000)], DAY_START + timedelta(minutes=9), DAY_START
        )
        is None
    )


def test_idle_key_never_exhausts() -> None:
    now = DAY_START + 3 * H
    f = forecast_exhaustion(100_000, 500_000, [(DAY_START, 100_000)], now, DAY_START)
    assert f is not None and f.exhaust_at is None and f.tokens_per_hour == 0


def test_already_exhausted_is_now() -> None:
    now = DAY_START + 3 * H
    f = forecast_exhaustion(600_000, 500_000, [(DAY_START + 2 * H, 10)], now, DAY_START)
    assert f is not None and f.exhaust_at == now
