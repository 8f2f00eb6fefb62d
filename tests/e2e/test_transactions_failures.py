"""Failures: test cards, insufficient funds, inactive wallets, compensation, bad input.
Every refusal is a problem+json with the contract's code, and moves no money."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import Stack, eventually
from tests.e2e.helpers import (
    assert_problem,
    internal_client,
    kafka_events,
    mails_to,
    user_with_token,
)
from tests.e2e.money import (
    CARD,
    arm_fault,
    balance,
    db_fetch,
    deposit,
    funded_user,
    move,
    wallet_for,
)


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("4000000000000002", "CARD_DECLINED"),
        ("4000000000009995", "CARD_DECLINED"),
        ("4000000000000069", "CARD_EXPIRED"),
        ("4000000000000119", "PAYMENT_GATEWAY_ERROR"),
    ],
)
async def test_declining_test_cards_fail_the_deposit_and_credit_nothing(
    api: httpx.AsyncClient, number: str, code: str
) -> None:
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    resp = await deposit(api, auth, wallet["id"], "10.00", card={**CARD, "number": number})
    body = assert_problem(resp, 400, code)
    tx = (await api.get(f"/transactions/{body['transaction_id']}", headers=auth)).json()
    assert (tx["status"], tx["failure_code"]) == ("FAILED", code)
    assert await balance(api, auth, wallet["id"]) == "0.00"


async def test_past_expiry_date_is_card_expired(api: httpx.AsyncClient) -> None:
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    resp = await deposit(api, auth, wallet["id"], "10.00", card={**CARD, "exp_year": 2020})
    assert_problem(resp, 400, "CARD_EXPIRED")
    assert await balance(api, auth, wallet["id"]) == "0.00"


async def test_card_failing_luhn_is_422_and_creates_no_transaction(
    api: httpx.AsyncClient,
) -> None:
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    for card in (
        {**CARD, "number": "4242424242424241"},
        {**CARD, "cvc": "12"},
        {**CARD, "exp_month": 13},
    ):
        resp = await deposit(api, auth, wallet["id"], "10.00", card=card)
        assert_problem(resp, 422, "VALIDATION_ERROR")
        assert "4242424242424241" not in resp.text
    listed = (await api.get("/transactions", headers=auth)).json()
    assert listed["items"] == []


async def test_insufficient_funds_and_inactive_wallets_fail_and_move_nothing(
    api: httpx.AsyncClient,
) -> None:
    _, a_auth, a_wallet = await funded_user(api, "10.00")
    _, b_auth, b_wallet = await funded_user(api, "0")
    too_much = await move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "10.01")
    body = assert_problem(too_much, 400, "INSUFFICIENT_FUNDS")
    assert body["transaction_id"]
    await api.post(f"/wallets/{a_wallet['id']}/deactivate", headers=a_auth)
    inactive_src = await move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "1.00")
    assert_problem(inactive_src, 400, "WALLET_INACTIVE")
    await api.post(f"/wallets/{a_wallet['id']}/activate", headers=a_auth)
    await api.post(f"/wallets/{b_wallet['id']}/deactivate", headers=b_auth)
    inactive_dst = await move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "1.00")
    assert_problem(inactive_dst, 400, "WALLET_INACTIVE")
    assert await balance(api, a_auth, a_wallet["id"]) == "10.00"
    assert await balance(api, b_auth, b_wallet["id"]) == "0.00"


async def test_destination_deactivated_after_validation_fails_the_transfer_moving_nothing(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    alice, a_auth, a_wallet = await funded_user(api, "40.00")
    _, b_auth, b_wallet = await funded_user(api, "0")
    await arm_fault(stack, b_wallet["id"], "deactivate_destination")
    resp = await move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "15.00")
    body = assert_problem(resp, 400, "WALLET_INACTIVE")
    tx = (await api.get(f"/transactions/{body['transaction_id']}", headers=a_auth)).json()
    assert tx["status"] == "FAILED"
    assert await balance(api, a_auth, a_wallet["id"]) == "40.00"
    assert await balance(api, b_auth, b_wallet["id"]) == "0.00"
    [failed] = await kafka_events(stack, "transaction.failed", tx["id"], 1)
    assert failed["data"]["failure_code"] == "WALLET_INACTIVE"
    # The status is checked under the wallets' locks, inside the move: nothing left the
    # source, so nothing had to come back.
    entries = await db_fetch(
        stack,
        "SELECT count(*) AS n FROM wallets.ledger_entries WHERE transaction_id = $1",
        uuid.UUID(tx["id"]),
    )
    assert entries[0]["n"] == 0

    async def failure_mail() -> list[object]:
        return [
            m
            for m in mails_to(stack.infra.inbox, alice["email"])
            if "did not go through" in m["Subject"]
        ]  # type: ignore[index]

    await eventually(failure_mail, timeout=60)


async def test_abusive_inputs_get_the_contracts_errors_and_move_nothing(
    api: httpx.AsyncClient,
) -> None:
    _, a_auth, a_wallet = await funded_user(api, "20.00")
    _, b_auth, b_wallet = await funded_user(api, "0")
    src, dst = a_wallet["id"], b_wallet["id"]
    invalid = ["-5", "0", "0.001", "1e3", "NaN", "abc", "", "1" * 40]
    for amount in invalid:
        assert_problem(
            await move(api, a_auth, "transfer", src, dst, amount), 422, "VALIDATION_ERROR"
        )
    for amount in [10, 10.5, None]:
        assert_problem(
            await move(api, a_auth, "transfer", src, dst, amount),
            422,  # type: ignore[arg-type]
            "VALIDATION_ERROR",
        )
    assert_problem(
        await move(api, a_auth, "transfer", src, dst, "1.00", currency="XXX"),
        422,
        "VALIDATION_ERROR",
    )
    assert_problem(
        await move(api, a_auth, "transfer", src, dst, "1.00", extra="x"), 422, "VALIDATION_ERROR"
    )
    missing = await api.post("/transactions/create", json={"type": "transfer"}, headers=a_auth)
    assert_problem(missing, 422, "VALIDATION_ERROR")
    unknown_type = await api.post(
        "/transactions/create", json={"type": "withdrawal", "amount": "1.00"}, headers=a_auth
    )
    assert_problem(unknown_type, 422, "VALIDATION_ERROR")
    assert_problem(
        await move(api, a_auth, "transfer", src, dst, "99999999.00"), 400, "LIMIT_EXCEEDED"
    )
    assert_problem(await move(api, a_auth, "transfer", src, src, "1.00"), 400, "SAME_WALLET")
    assert_problem(
        await move(api, a_auth, "transfer", src, dst, "1.00", currency="EUR"),
        400,
        "CURRENCY_MISMATCH",
    )
    # someone else's source, an unknown destination, someone else's deposit target
    assert_problem(await move(api, a_auth, "transfer", dst, src, "1.00"), 404, "WALLET_NOT_FOUND")
    assert_problem(
        await move(api, a_auth, "transfer", src, str(uuid.uuid4()), "1.00"), 404, "WALLET_NOT_FOUND"
    )
    assert_problem(await deposit(api, a_auth, dst, "1.00"), 404, "WALLET_NOT_FOUND")
    assert await balance(api, a_auth, src) == "20.00"
    assert await balance(api, b_auth, dst) == "0.00"


async def test_jpy_amounts_have_no_decimals(api: httpx.AsyncClient) -> None:
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth, "JPY")
    assert_problem(await deposit(api, auth, wallet["id"], "10.5"), 422, "VALIDATION_ERROR")
    ok = await deposit(api, auth, wallet["id"], "1500")
    assert ok.status_code == 201, ok.text
    assert ok.json()["amount"] == "1500"
    assert await balance(api, auth, wallet["id"]) == "1500"


async def test_deposit_refused_by_the_wallet_after_the_charge_refunds_the_card(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    await arm_fault(stack, wallet["id"], "deactivate_destination")
    resp = await deposit(api, auth, wallet["id"], "12.00")
    body = assert_problem(resp, 400, "WALLET_INACTIVE")
    payments = await db_fetch(
        stack,
        "SELECT status FROM payment_gateway.payments WHERE transaction_id = $1",
        uuid.UUID(body["transaction_id"]),
    )
    assert [p["status"] for p in payments] == ["refunded"]
    await api.post(f"/wallets/{wallet['id']}/activate", headers=auth)
    assert await balance(api, auth, wallet["id"]) == "0.00"
    statuses = await kafka_events(
        stack,
        "payment.processed",
        None,
        2,
        where=lambda e: e["data"]["transaction_id"] == body["transaction_id"],
    )
    assert [e["data"]["status"] for e in statuses] == ["succeeded", "refunded"]


async def test_once_a_refund_is_decided_the_saga_never_goes_forward(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # Issue 20.13: a deposit whose saga recorded `compensating` (its credit was refused)
    # and then crashed before the card refund. By the time recovery resumes it, the
    # wallet could take the credit again: the saga still goes back (fence, card refund),
    # never forward.
    user, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    tx = uuid.uuid4()
    async with internal_client(stack, "payment_gateway") as pg:
        charged = await pg.post(
            "/payments/charge",
            json={"transaction_id": str(tx), "amount": "6.00", "currency": "USD", "card": CARD},
        )
        assert charged.json()["status"] == "succeeded"
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        await conn.execute(
            "INSERT INTO transactions.transactions (id, type, status, phase, amount, currency,"
            " initiator_user_id, destination_wallet_id, destination_user_id, failure_code,"
            " steps, attempts, lease_until, created_at, updated_at)"
            " VALUES ($1, 'deposit', 'PROCESSING', 'compensating', 600, 'USD', $2, $3, $2,"
            " 'WALLET_INACTIVE', '[]'::jsonb, 1, now() - interval '1 minute',"
            " now() - interval '2 minutes', now() - interval '2 minutes')",
            tx,
            uuid.UUID(user["id"]),
            uuid.UUID(wallet["id"]),
        )
    finally:
        await conn.close()

    async def finished() -> Any:
        [row] = await db_fetch(
            stack, "SELECT status, failure_code FROM transactions.transactions WHERE id = $1", tx
        )
        return row if row["status"] in ("COMPLETED", "FAILED") else None

    row = await eventually(finished, timeout=60)
    assert (row["status"], row["failure_code"]) == ("FAILED", "WALLET_INACTIVE")
    payments = await db_fetch(
        stack, "SELECT status FROM payment_gateway.payments WHERE transaction_id = $1", tx
    )
    assert [p["status"] for p in payments] == ["refunded"]
    assert await balance(api, auth, wallet["id"]) == "0.00"
    assert (
        await db_fetch(stack, "SELECT 1 FROM wallets.ledger_entries WHERE transaction_id = $1", tx)
        == []
    )
