"""The estimated balance, token packs and the run-out forecast, by hand to the nano-unit."""

from __future__ import annotations

from datetime import date, timedelta

from monitor.ledger.billing import (
    BalanceState,
    DaySpend,
    Pack,
    TopUp,
    balance_state,
    expiring_packs,
    run_out_day,
    thresholds_crossed,
)

D = date(2026, 11, 20)
DOLLAR = 10**9


def test_spending_comes_off_the_balance_from_the_first_top_up_on() -> None:
    state = balance_state(
        [TopUp(D, 10 * DOLLAR), TopUp(D + timedelta(days=2), 5 * DOLLAR)],
        [],
        [
            DaySpend(D - timedelta(days=1), "a", 1_000, 3 * DOLLAR),  # before any top-up
            DaySpend(D, "a", 1_000, 782_400_000),
            DaySpend(D + timedelta(days=1), "b", 10, 1),
        ],
    )
    assert state.balance == 15 * DOLLAR - 782_400_000 - 1
    assert (state.last_top_up, state.last_top_up_day) == (5 * DOLLAR, D + timedelta(days=2))


def test_a_pack_covers_paid_tokens_before_the_balance_pro_rata() -> None:
    pack = Pack(1, 600, D, D + timedelta(days=10), "team")
    other = Pack(2, 1_000, D, D + timedelta(days=10), "elsewhere")
    state = balance_state(
        [TopUp(D, DOLLAR)],
        [pack, other],
        # 1,000 paid tokens costing 1,000,000: the pack covers 600, the balance pays 400/1,000
        [DaySpend(D + timedelta(days=1), "team", 1_000, 1_000_000)],
    )
    assert state.balance == DOLLAR - 400_000
    assert [left.tokens_left for left in state.packs] == [0, 1_000]


def test_an_expired_pack_covers_nothing() -> None:
    pack = Pack(1, 600, D, D, None)
    state = balance_state([TopUp(D, DOLLAR)], [pack], [DaySpend(D + timedelta(days=1), "x", 10, 7)])
    assert state.balance == DOLLAR - 7
    assert state.packs[0].tokens_left == 600


def test_the_balance_runs_out_at_the_last_seven_days_rate() -> None:
    today = D + timedelta(days=10)
    spent = {today - timedelta(days=n): DOLLAR for n in range(1, 8)}  # $1 a day
    state = BalanceState(10 * DOLLAR + 1, 20 * DOLLAR, D, (), spent)
    assert run_out_day(state, today) == today + timedelta(days=11)  # 10.000000001 days
    assert run_out_day(BalanceState(0, DOLLAR, D, ()), today) == today
    assert run_out_day(BalanceState(DOLLAR, DOLLAR, D, ()), today) is None


def test_thresholds_and_expiring_packs() -> None:
    state = BalanceState(19 * DOLLAR, 100 * DOLLAR, D, ())
    assert thresholds_crossed(state, (50, 20, 10, 0)) == [50, 20]
    assert thresholds_crossed(BalanceState(0, DOLLAR, D, ()), (50, 20, 10, 0)) == [50, 20, 10, 0]
    assert thresholds_crossed(BalanceState(0, None, None, ()), (50,)) == []
    soon = balance_state([], [Pack(1, 5, D, D + timedelta(days=3))], [])
    assert [p.pack.id for p in expiring_packs(soon, D)] == [1]
    assert expiring_packs(soon, D - timedelta(days=1)) == []
