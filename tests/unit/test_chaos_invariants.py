"""The chaos checks (bench/invariants.py), each fed a crafted broken state: a check that
cannot fail proves nothing. Each sound state passes; each break is counted."""

from __future__ import annotations

from datetime import date

from bench.invariants import (
    CardRefund,
    Charge,
    HoldRow,
    Leg,
    Spend,
    Tx,
    WalletEvent,
    emails_sent_once,
    events_in_commit_order,
    events_match_ledger,
    holds_match,
    legs_match_outcomes,
    limits_held,
    money_conserved,
    one_answer_per_key,
    run_messages,
)

A, B, C = "wallet-a", "wallet-b", "wallet-c"
DEP = Tx("t-dep", "deposit", "COMPLETED", 1000, "USD", None, A)
MOVE = Tx("t-move", "transfer", "COMPLETED", 300, "USD", A, B)
FAILED = Tx("t-failed", "transfer", "FAILED", 200, "USD", A, B)
TXS = {t.id: t for t in (DEP, MOVE, FAILED)}
LEGS = [
    Leg(1, DEP.id, A, 1000),
    Leg(2, MOVE.id, A, -300),
    Leg(3, MOVE.id, B, 300),
    # the legacy saga's failure: a debit given back
    Leg(4, FAILED.id, A, -200),
    Leg(5, FAILED.id, A, 200),
]
CHARGES = [Charge(DEP.id, 1000, "USD", "succeeded")]
BALANCES = {"USD": 1000}


def events_of(legs: list[Leg]) -> list[WalletEvent]:
    return [
        WalletEvent(
            "wallet.funds_added" if leg.amount > 0 else "wallet.funds_deducted",
            leg.wallet_id,
            leg.tx_id,
            f"e{leg.id}",
        )
        for leg in legs
    ]


def test_the_sound_state_passes_every_check() -> None:
    assert legs_match_outcomes(TXS, LEGS)[1] == 0
    assert money_conserved(TXS, CHARGES, BALANCES)[1] == 0
    assert events_match_ledger(LEGS, events_of(LEGS))[1] == 0
    seq = {("wallet.funds_deducted", A): [MOVE.id, FAILED.id]}
    assert events_in_commit_order(LEGS, seq)[1] == 0
    assert emails_sent_once([("a@x", "<1>"), ("b@x", "<2>")], 0)[1] == 0


def test_a_failed_transfer_that_moved_both_legs_is_counted() -> None:
    # Nets 0 over both wallets, so the old check (a sum per transaction) passed it.
    half = [*LEGS[:3], Leg(4, FAILED.id, A, -200), Leg(5, FAILED.id, B, 200)]
    assert legs_match_outcomes(TXS, half)[1] == 1


def test_a_completed_transfer_with_one_leg_or_the_wrong_wallet_is_counted() -> None:
    one_leg = [LEGS[0], LEGS[1], *LEGS[3:]]
    assert legs_match_outcomes(TXS, one_leg)[1] == 1
    elsewhere = [LEGS[0], LEGS[1], Leg(3, MOVE.id, C, 300), *LEGS[3:]]
    assert legs_match_outcomes(TXS, elsewhere)[1] == 1
    orphan = [*LEGS, Leg(9, "t-unknown", C, 5)]
    assert legs_match_outcomes(TXS, orphan)[1] == 1


def test_a_deposit_no_card_paid_for_is_counted_even_when_the_tables_agree() -> None:
    # The ledger and the balances agree with the deposit; the processor never charged.
    assert money_conserved(TXS, [], BALANCES)[1] >= 1
    declined = [Charge(DEP.id, 1000, "USD", "declined")]
    assert money_conserved(TXS, declined, BALANCES)[1] >= 1


def test_a_failed_deposit_whose_charge_was_kept_is_counted() -> None:
    lost = Tx("t-dep2", "deposit", "FAILED", 500, "USD", None, A)
    txs = {**TXS, lost.id: lost}
    kept = [*CHARGES, Charge(lost.id, 500, "USD", "succeeded")]
    assert money_conserved(txs, kept, BALANCES)[1] >= 1
    for status in ("declined", "failed", "voided", "refunded"):
        ok = [*CHARGES, Charge(lost.id, 500, "USD", status)]
        assert money_conserved(txs, ok, BALANCES)[1] == 0, status


def test_refunds_to_cards_count_against_the_charges_and_break_when_one_side_is_missing() -> None:
    back = Tx("t-back", "refund", "COMPLETED", 400, "USD", A, None)
    txs = {**TXS, back.id: back}
    legs = [*LEGS, Leg(6, back.id, A, -400)]
    sound = [CardRefund(back.id, 400, "USD", "succeeded")]
    assert money_conserved(txs, CHARGES, {"USD": 600}, sound)[1] == 0
    assert legs_match_outcomes(txs, legs)[1] == 0
    # Out of the wallet, but the card never got it back.
    assert money_conserved(txs, CHARGES, {"USD": 600}, [])[1] >= 1
    refused = [CardRefund(back.id, 400, "USD", "failed")]
    assert money_conserved(txs, CHARGES, {"USD": 600}, refused)[1] >= 1
    # Back on the card while the refund failed (the wallet kept it, or got it back).
    failed = Tx(back.id, "refund", "FAILED", 400, "USD", A, None)
    assert money_conserved({**TXS, back.id: failed}, CHARGES, {"USD": 1000}, sound)[1] >= 1
    # Back on the card twice the amount.
    twice = [CardRefund(back.id, 800, "USD", "succeeded")]
    assert money_conserved(txs, CHARGES, {"USD": 600}, twice)[1] >= 1


def test_balances_that_differ_from_the_deposits_are_counted_per_currency() -> None:
    assert money_conserved(TXS, CHARGES, {"USD": 1001})[1] == 1
    assert money_conserved(TXS, CHARGES, {"USD": 1000, "EUR": 5})[1] == 1


def test_a_missing_or_an_extra_wallet_event_is_counted_both_ways() -> None:
    events = events_of(LEGS)
    assert events_match_ledger(LEGS, events[1:])[1] == 1
    extra = WalletEvent("wallet.funds_added", C, MOVE.id, "e-extra")
    assert events_match_ledger(LEGS, [*events, extra])[1] == 1
    # a redelivered event (same event_id) is one event
    assert events_match_ledger(LEGS, [*events, events[0]])[1] == 0


def test_an_event_out_of_commit_order_or_with_no_ledger_row_is_counted() -> None:
    out_of_order = {("wallet.funds_deducted", A): [FAILED.id, MOVE.id]}
    assert events_in_commit_order(LEGS, out_of_order)[1] == 1
    # The old check gave a missing position -1 and flagged it only after a later one.
    missing_first = {("wallet.funds_deducted", A): ["t-unknown", MOVE.id]}
    assert events_in_commit_order(LEGS, missing_first)[1] == 1


def test_an_email_resent_is_counted_beyond_what_the_faults_allow() -> None:
    twice = [("a@x", "<1>"), ("a@x", "<1>"), ("b@x", "<2>")]
    assert emails_sent_once(twice, 0)[1] == 1
    assert emails_sent_once(twice, 50)[1] == 0


def test_a_key_answered_two_ways_is_counted_and_in_progress_is_not_an_answer() -> None:
    # the defect chaos found: the request answered 400, its replays 201
    first = ("u1", "auth", "k1", 400, "AUTHORIZATION_EXPIRED", "t1")
    replay = ("u1", "auth", "k1", 201, "AUTHORIZED", "t1")
    waiting = ("u1", "auth", "k1", 409, "REQUEST_IN_PROGRESS", None)
    other_body = ("u1", "auth", "k1", 422, "IDEMPOTENCY_KEY_REUSED", None)
    assert one_answer_per_key([replay, waiting, other_body, replay])[1] == 0
    assert one_answer_per_key([first, replay])[1] == 1
    # another transaction under the same key, or the same key of another user or step
    assert one_answer_per_key([replay, ("u1", "auth", "k1", 201, "AUTHORIZED", "t2")])[1] == 1
    assert one_answer_per_key([replay, ("u2", "auth", "k1", 400, "X", "t9")])[1] == 0
    assert one_answer_per_key([replay, ("u1", "capture", "k1", 200, "COMPLETED", "t1")])[1] == 0
    # unkeyed calls are not grouped
    assert (
        one_answer_per_key(
            [("u1", "tx", None, 201, "COMPLETED", "t1"), ("u1", "tx", None, 400, "X", "t2")]
        )[1]
        == 0
    )


def test_the_mail_check_never_crashes_on_a_message_it_did_not_expect() -> None:
    # Finding 19.13: an internationalised To crashed the check. Mailpit's summaries
    # (the run's messages only: paysys_dev.inbox reads those since the run began).
    summaries = [
        {
            "ID": "m1",
            "MessageID": "",
            "To": [{"Name": "J\u00f6rg", "Address": "j\u00f6rg@b.example"}],
        },
        {"ID": "m2", "MessageID": "1", "To": [{"Name": "", "Address": "A@X.example"}]},
        {"ID": "m3", "MessageID": "2", "To": None},
        {"ID": "m4", "MessageID": "3", "To": ["not a mapping"]},
        {"MessageID": "4"},
        {"ID": "m6", "To": [{"Address": "a@x.example"}]},
    ]
    found = run_messages(summaries, {"a@x.example"})
    assert found == [("a@x.example", "1"), ("a@x.example", "m6")]


# -- authorizations (issue 22)

M = "wallet-merchant"
CAPTURED = Tx("t-cap", "payment", "COMPLETED", 500, "USD", A, M, captured=300, manual=True)
VOIDED = Tx("t-void", "payment", "VOIDED", 200, "USD", A, M, manual=True)
WAITING = Tx("t-wait", "payment", "AUTHORIZED", 100, "USD", A, M, manual=True)
REFUSED = Tx("t-ref", "payment", "FAILED", 9000, "USD", A, M, manual=True)
AUTHS = {t.id: t for t in (CAPTURED, VOIDED, WAITING, REFUSED)}
HOLDS = [
    HoldRow(CAPTURED.id, A, 500, "captured", 300),
    HoldRow(VOIDED.id, A, 200, "released", None),
    HoldRow(WAITING.id, A, 100, "open", None),
    HoldRow(REFUSED.id, A, 9000, "refused", None),
]


def test_holds_agree_with_their_authorizations_and_the_held_balances() -> None:
    assert holds_match(AUTHS, HOLDS, {A: 100})[1] == 0
    # a held balance that is not the sum of the open holds
    assert holds_match(AUTHS, HOLDS, {A: 0})[1] == 1
    assert holds_match(AUTHS, HOLDS, {A: 100, M: 5})[1] == 1
    # a voided authorization whose hold still reserves money
    still_open = [
        HoldRow(VOIDED.id, A, 200, "open", None) if h.tx_id == VOIDED.id else h for h in HOLDS
    ]
    assert holds_match(AUTHS, still_open, {A: 300})[1] == 1
    # a capture that took another amount than the transaction says
    other = [
        HoldRow(CAPTURED.id, A, 500, "captured", 500) if h.tx_id == CAPTURED.id else h
        for h in HOLDS
    ]
    assert holds_match(AUTHS, other, {A: 100})[1] == 1
    # a completed authorization with no hold at all, and a hold of no authorization
    assert holds_match(AUTHS, [h for h in HOLDS if h.tx_id != CAPTURED.id], {A: 100})[1] == 1
    stray = [*HOLDS, HoldRow("t-none", A, 50, "released", None)]
    assert holds_match(AUTHS, stray, {A: 100})[1] == 1


def test_a_captured_payment_moves_what_was_captured_and_a_voided_one_nothing() -> None:
    legs = [Leg(1, CAPTURED.id, A, -300), Leg(2, CAPTURED.id, M, 300)]
    assert legs_match_outcomes({CAPTURED.id: CAPTURED, VOIDED.id: VOIDED}, legs)[1] == 0
    whole = [Leg(1, CAPTURED.id, A, -500), Leg(2, CAPTURED.id, M, 500)]
    assert legs_match_outcomes({CAPTURED.id: CAPTURED}, whole)[1] == 1
    moved = [Leg(1, VOIDED.id, A, -200), Leg(2, VOIDED.id, M, 200)]
    assert legs_match_outcomes({VOIDED.id: VOIDED}, moved)[1] == 1


def test_a_spending_limit_passed_in_a_day_a_month_or_one_transaction_is_counted() -> None:
    limits = {"w": (45, 100, 150), "free": (None, None, None)}
    d1, d2, next_month = date(2027, 1, 30), date(2027, 1, 31), date(2027, 2, 1)
    sound = [Spend("w", 45, d1), Spend("w", 45, d1), Spend("w", 10, d1), Spend("w", 25, d2)]
    sound += [
        Spend("w", 25, d2),
        Spend("w", 45, next_month),
        Spend("free", 10**9, d1),
        Spend("other", 10**9, d1),
    ]
    assert limits_held(sound, limits)[1] == 0  # reaching a limit exactly is allowed
    assert limits_held([*sound, Spend("w", 1, d1)], limits)[1] == 2  # the day and the month
    assert limits_held([*sound, Spend("w", 1, next_month)], limits)[1] == 0
    assert limits_held([Spend("w", 46, next_month)], limits)[1] == 1  # one transaction
    assert limits_held([Spend("w", 40, d) for d in (d1, d1, d1)], limits)[1] == 1
