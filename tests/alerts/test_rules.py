"""The alert rules as pure functions: thresholds, forecasts, error windows, digest, day edges."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from monitor.alerts.rules import (
    ALL_RULES,
    RULE_AUTH_BURST,
    RULE_BURN_RATE,
    RULE_DIGEST,
    RULE_ERROR_RATE,
    RULE_LATENCY,
    RULE_QUOTA,
    RULE_QUOTA_REFUSED,
    Decision,
    ErrorPolicy,
    ErrorWindowCounts,
    KeyState,
    LatencyWindow,
    PriorAlert,
    Silence,
    digest_due,
    error_alerts,
    forecast_alert,
    latency_alert,
    quota_alerts,
    silenced_by,
    window_start,
)
from monitor.ledger.quota_day import day_start, next_reset, quota_day

SHANGHAI = ZoneInfo("Asia/Shanghai")
THRESHOLDS = (50, 80, 90, 100)
DAY = date(2026, 3, 10)
QUOTA = 500_000


def state(used: int, day: date = DAY, quota: int = QUOTA) -> KeyState:
    return KeyState("k_1", day, quota, used, name="ci-bot", hint="a1b2")


def record(decisions: list[Decision], ledger: list[PriorAlert]) -> list[PriorAlert]:
    """What the ledger holds after writing ``decisions`` (every decision becomes a row)."""
    return ledger + [
        PriorAlert(d.rule, d.threshold, d.day, d.forecast_at, notified=d.send) for d in decisions
    ]


def sent(decisions: list[Decision]) -> list[int]:
    return [d.threshold for d in decisions if d.send]


def test_crossing_50_then_80_sends_each_once() -> None:
    ledger: list[PriorAlert] = []
    assert quota_alerts(state(200_000), THRESHOLDS, ledger) == []
    first = quota_alerts(state(250_000), THRESHOLDS, ledger)
    assert sent(first) == [50] and len(first) == 1
    ledger = record(first, ledger)
    assert quota_alerts(state(300_000), THRESHOLDS, ledger) == []
    second = quota_alerts(state(400_000), THRESHOLDS, ledger)
    assert sent(second) == [80] and len(second) == 1
    ledger = record(second, ledger)
    assert quota_alerts(state(449_999), THRESHOLDS, ledger) == []


def test_jump_to_95_names_90_and_never_sends_50_or_80() -> None:
    decisions = quota_alerts(state(475_000), THRESHOLDS, [])
    assert sent(decisions) == [90]
    assert sorted((d.threshold, d.send) for d in decisions) == [
        (50, False),
        (80, False),
        (90, True),
    ]
    assert all("superseded by 90%" in d.reason for d in decisions if not d.send)
    ledger = record(decisions, [])
    # Later in the day, at 95 % still, nothing more; at 100 % only the 100 % alert.
    assert quota_alerts(state(475_000), THRESHOLDS, ledger) == []
    last = quota_alerts(state(QUOTA), THRESHOLDS, ledger)
    assert [(d.threshold, d.send) for d in last] == [(100, True)]


def test_exactly_100_percent_and_beyond() -> None:
    assert sent(quota_alerts(state(QUOTA), THRESHOLDS, [])) == [100]
    assert sent(quota_alerts(state(QUOTA * 3), THRESHOLDS, [])) == [100]
    assert sent(quota_alerts(state(QUOTA - 1), THRESHOLDS, [])) == [90]


def test_thresholds_are_per_quota_day_at_the_beijing_midnight() -> None:
    before = datetime(2026, 3, 10, 23, 59, 59, tzinfo=SHANGHAI)
    after = datetime(2026, 3, 11, 0, 0, 0, tzinfo=SHANGHAI)
    day1, day2 = quota_day(before, SHANGHAI), quota_day(after, SHANGHAI)
    assert (day1, day2) == (date(2026, 3, 10), date(2026, 3, 11))
    ledger = record(quota_alerts(state(260_000, day1), THRESHOLDS, []), [])
    # Still day 1 one second before midnight: already alerted.
    assert quota_alerts(state(260_000, day1), THRESHOLDS, ledger) == []
    # The same crossing on the new quota day alerts again.
    assert sent(quota_alerts(state(260_000, day2), THRESHOLDS, ledger)) == [50]


def test_raised_quota_mid_day_does_not_resend() -> None:
    ledger = record(quota_alerts(state(450_000), THRESHOLDS, []), [])
    raised = state(450_000, quota=5_000_000)
    assert quota_alerts(raised, THRESHOLDS, ledger) == []


def test_reconfigured_lower_threshold_is_skipped_not_sent() -> None:
    ledger = [PriorAlert(RULE_QUOTA, 90, DAY)]
    decisions = quota_alerts(state(350_000), (60, 90), ledger)
    assert [(d.threshold, d.send) for d in decisions] == [(60, False)]


# -- forecast ---------------------------------------------------------------------------------


RESET = next_reset(datetime(2026, 3, 10, 12, tzinfo=SHANGHAI), SHANGHAI)


def test_forecast_before_reset_is_sent_once() -> None:
    at = RESET - timedelta(hours=3)
    first = forecast_alert(state(300_000), at, RESET, [])
    assert first == Decision(RULE_BURN_RATE, 1, DAY, forecast_at=at)
    ledger = record([first], [])
    assert forecast_alert(state(310_000), at - timedelta(minutes=59), RESET, ledger) is None


def test_forecast_after_reset_or_none_is_not_sent() -> None:
    assert forecast_alert(state(300_000), RESET, RESET, []) is None
    assert forecast_alert(state(300_000), RESET + timedelta(hours=1), RESET, []) is None
    assert forecast_alert(state(300_000), None, RESET, []) is None
    # Already exhausted: the 100 % alert says so, not a forecast.
    assert forecast_alert(state(QUOTA), RESET - timedelta(hours=5), RESET, []) is None


def test_forecast_much_earlier_is_sent_again() -> None:
    at = RESET - timedelta(hours=3)
    ledger = record([forecast_alert(state(300_000), at, RESET, [])], [])  # type: ignore[list-item]
    again = forecast_alert(state(350_000), at - timedelta(minutes=60), RESET, ledger)
    assert again is not None and again.threshold == 2
    ledger = record([again], ledger)
    # Compared with the latest (earliest) forecast sent, not the first.
    assert forecast_alert(state(360_000), at - timedelta(minutes=90), RESET, ledger) is None
    third = forecast_alert(state(360_000), at - timedelta(minutes=120), RESET, ledger)
    assert third is not None and third.threshold == 3


def test_forecast_on_a_new_day_starts_over() -> None:
    ledger = [PriorAlert(RULE_BURN_RATE, 1, DAY, RESET - timedelta(hours=1))]
    next_day = date(2026, 3, 11)
    decision = forecast_alert(
        state(300_000, next_day), RESET + timedelta(hours=20), RESET + timedelta(days=1), ledger
    )
    assert decision is not None and decision.threshold == 1 and decision.day == next_day


# -- error windows ----------------------------------------------------------------------------

START = day_start(DAY, SHANGHAI)


def window(calls: int, bad: int, unauthorized: int = 0, minute: int = 600) -> ErrorWindowCounts:
    begin = START + timedelta(minutes=minute)
    return ErrorWindowCounts("k_1", begin, begin + timedelta(minutes=15), calls, bad, unauthorized)


def test_error_rate_needs_share_and_minimum_calls() -> None:
    assert error_alerts(window(19, 19), DAY, START, []) == []
    assert error_alerts(window(100, 19), DAY, START, []) == []
    decisions = error_alerts(window(100, 20), DAY, START, [])
    assert decisions == [Decision(RULE_ERROR_RATE, 600, DAY)]
    assert error_alerts(window(100, 50), DAY, START, record(decisions, [])) == []


def test_auth_burst() -> None:
    assert error_alerts(window(4, 0, unauthorized=4), DAY, START, []) == []
    decisions = error_alerts(window(5, 0, unauthorized=5), DAY, START, [])
    assert decisions == [Decision(RULE_AUTH_BURST, 600, DAY)]
    assert error_alerts(window(9, 0, unauthorized=9), DAY, START, record(decisions, [])) == []


def test_quota_refused_burst() -> None:
    begin = START + timedelta(minutes=600)

    def refused(n: int) -> ErrorWindowCounts:
        return ErrorWindowCounts("k_1", begin, begin + timedelta(minutes=15), n, 0, 0, n)

    assert error_alerts(refused(2), DAY, START, []) == []
    decisions = error_alerts(refused(3), DAY, START, [])
    assert decisions == [Decision(RULE_QUOTA_REFUSED, 600, DAY)]
    assert error_alerts(refused(30), DAY, START, record(decisions, [])) == []


def test_window_start_is_aligned_to_the_quota_day() -> None:
    now = START + timedelta(hours=10, minutes=7, seconds=30)
    assert window_start(now, START, timedelta(minutes=15)) == START + timedelta(hours=10)
    assert window_start(START, START, timedelta(minutes=15)) == START


def test_error_policy_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="divide a day"):
        ErrorPolicy(window=timedelta(minutes=7))
    with pytest.raises(ValueError, match="share"):
        ErrorPolicy(share=1.5)


# -- digest -----------------------------------------------------------------------------------


def test_digest_after_reset_once_per_key() -> None:
    today_start = day_start(date(2026, 3, 11), SHANGHAI)
    assert today_start == datetime(2026, 3, 10, 16, tzinfo=UTC)
    early = today_start + timedelta(minutes=5)
    late = today_start + timedelta(minutes=20)
    assert digest_due(DAY, today_start, early, 10, True, []) is None
    decision = digest_due(DAY, today_start, late, 10, True, [])
    assert decision == Decision(RULE_DIGEST, 0, DAY)
    assert digest_due(DAY, today_start, late, 10, True, record([decision], [])) is None
    assert digest_due(DAY, today_start, late, 0, True, []) is None
    assert digest_due(DAY, today_start, late, 10, False, []) is None


# -- incidents: start, reminder, recovery ------------------------------------------------------


def test_incident_sends_at_start_reminds_after_the_repeat_and_recovers_once() -> None:
    held: list[PriorAlert] = []
    sent_at: list[tuple[str, int]] = []
    # Firing from 10:00 to 11:45 (quota-day minutes 600…705), quiet from 12:00.
    for minute in range(600, 750, 15):
        bad = minute < 720
        before = window(100, 50 if minute - 15 < 720 and minute > 600 else 0, minute=minute - 15)
        decisions = error_alerts(
            window(100, 50 if bad else 0, minute=minute), DAY, START, held,
            previous=before if minute > 600 else None, repeat=timedelta(minutes=60),
        )  # fmt: skip
        held = record(decisions, held)
        sent_at += [(d.rule, d.threshold) for d in decisions if d.send]
    assert sent_at == [
        (RULE_ERROR_RATE, 600),  # the start
        (RULE_ERROR_RATE, 660),  # one reminder an hour later
        ("error_rate_recovered", 705),  # the last firing window was 11:45
    ]
    skipped = [p.threshold for p in held if not p.notified]
    assert skipped == [615, 630, 645, 675, 690, 705]


def test_a_new_incident_after_a_recovery_starts_again() -> None:
    held = [
        PriorAlert(RULE_AUTH_BURST, 600, DAY),
        PriorAlert("auth_burst_recovered", 600, DAY),
    ]
    assert error_alerts(window(5, 0, unauthorized=5, minute=660), DAY, START, held) == [
        Decision(RULE_AUTH_BURST, 660, DAY)
    ]


def test_no_recovery_while_the_window_before_still_fired() -> None:
    held = [PriorAlert(RULE_ERROR_RATE, 600, DAY)]
    quiet_now = window(100, 0, minute=615)
    assert error_alerts(quiet_now, DAY, START, held, previous=window(100, 50, minute=600)) == []


def test_latency_incident_per_model() -> None:
    begin = START + timedelta(minutes=600)
    slow = LatencyWindow("LongCat-2.0", begin, begin + timedelta(minutes=15), 100, 6, 2000.0)
    assert slow.firing and not replace(slow, over=5).firing  # p95 over: more than 5 % slower
    assert not replace(slow, calls=9, over=9).firing  # too few calls to judge
    first = latency_alert(RULE_LATENCY, slow, DAY, START, [])
    assert first == Decision(RULE_LATENCY, 600, DAY)
    later = replace(slow, start=begin + timedelta(minutes=15), over=0)
    assert latency_alert(RULE_LATENCY, later, DAY, START, record([first], [])) == Decision(
        "latency_recovered", 600, DAY
    )


def test_silence_covers_its_rule_key_and_time() -> None:
    t = START + timedelta(hours=10)
    s = Silence(1, RULE_ERROR_RATE, "k_1", t, t + timedelta(hours=4))
    assert s.covers(RULE_ERROR_RATE, "k_1", t + timedelta(hours=1))
    assert s.covers("error_rate_recovered", "k_1", t + timedelta(hours=1))
    assert not s.covers(RULE_ERROR_RATE, "k_2", t + timedelta(hours=1))
    assert not s.covers(RULE_QUOTA, "k_1", t + timedelta(hours=1))
    assert not s.covers(RULE_ERROR_RATE, "k_1", t + timedelta(hours=4))
    every = Silence(2, ALL_RULES, None, t, t + timedelta(hours=8))
    assert silenced_by([s, every], RULE_ERROR_RATE, "k_1", t) == every
    assert silenced_by([s], RULE_QUOTA, "k_1", t) is None
