"""Refunds (issue 22): a completed transfer or payment goes back, in full or in parts,
as transactions of their own; never more than was moved, however many race."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from decimal import Decimal
from typing import Any

import httpx

from tests.conftest import Stack, eventually
from tests.e2e.helpers import assert_problem, kafka_events
from tests.e2e.money import arm_fault, balance, db_fetch, deposit, funded_user, move


async def paid(
    api: httpx.AsyncClient, amount: str = "20.00"
) -> tuple[dict, dict, dict, dict, dict]:  # type: ignore[type-arg]
    """A payer who paid a merchant `amount`: (payer auth, payer wallet, merchant auth,
    merchant wallet, the payment)."""
    _, p_auth, p_wallet = await funded_user(api, "50.00")
    _, m_auth, m_wallet = await funded_user(api, "0", account_type="merchant")
    resp = await move(api, p_auth, "payment", p_wallet["id"], m_wallet["id"], amount)
    assert resp.status_code == 201, resp.text
    return p_auth, p_wallet, m_auth, m_wallet, resp.json()


async def refund(
    api: httpx.AsyncClient, auth: dict[str, str], tx_id: str, key: str | None = None, **body: str
) -> httpx.Response:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return await api.post(f"/transactions/{tx_id}/refund", json=body, headers=headers)


async def test_a_merchant_refunds_a_payment_in_parts_until_nothing_is_left(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    p_auth, p_wallet, m_auth, m_wallet, payment = await paid(api)
    first = await refund(api, m_auth, payment["id"], amount="5.00", reason="one item back")
    assert first.status_code == 201, first.text
    r = first.json()
    assert (r["type"], r["status"], r["amount"]) == ("refund", "COMPLETED", "5.00")
    assert r["refunded_transaction_id"] == payment["id"]
    assert (r["source_wallet_id"], r["destination_wallet_id"]) == (m_wallet["id"], p_wallet["id"])
    assert r["description"] == "one item back"
    original = (await api.get(f"/transactions/{payment['id']}", headers=p_auth)).json()
    assert (original["status"], original["refunded_amount"]) == ("COMPLETED", "5.00")
    rest = await refund(api, m_auth, payment["id"])  # all that is left, by default
    assert rest.status_code == 201 and rest.json()["amount"] == "15.00"
    assert_problem(await refund(api, m_auth, payment["id"]), 400, "REFUND_EXCEEDS_AMOUNT")
    assert await balance(api, p_auth, p_wallet["id"]) == "50.00"
    assert await balance(api, m_auth, m_wallet["id"]) == "0.00"
    original = (await api.get(f"/transactions/{payment['id']}", headers=m_auth)).json()
    assert original["refunded_amount"] == "20.00"
    # The payer sees the refunds in the history; each one event, once.
    listed = (await api.get("/transactions?type=refund", headers=p_auth)).json()["items"]
    assert {t["id"] for t in listed} == {r["id"], rest.json()["id"]}
    events = await kafka_events(stack, "transaction.completed", r["id"], 1)
    assert len(events) == 1 and events[0]["data"]["type"] == "refund"
    assert events[0]["data"]["refunded_transaction_id"] == payment["id"]


async def test_who_may_refund_what_checked_in_order(api: httpx.AsyncClient) -> None:
    p_auth, _, m_auth, _, payment = await paid(api)
    _, stranger, _ = await funded_user(api, "0")
    assert_problem(await refund(api, stranger, payment["id"]), 404, "TRANSACTION_NOT_FOUND")
    assert_problem(await refund(api, m_auth, str(uuid.uuid4())), 404, "TRANSACTION_NOT_FOUND")
    assert_problem(await refund(api, m_auth, "nope"), 404, "TRANSACTION_NOT_FOUND")
    assert_problem(await refund(api, p_auth, payment["id"]), 403, "FORBIDDEN")  # the payer
    assert_problem(
        await refund(api, m_auth, payment["id"], amount="25.00"), 400, "REFUND_EXCEEDS_AMOUNT"
    )
    assert_problem(
        await refund(api, m_auth, payment["id"], amount="1.001"), 422, "VALIDATION_ERROR"
    )
    done = (await refund(api, m_auth, payment["id"], amount="1.00")).json()
    # A refund is not refunded; a failed transaction has nothing to give back.
    assert_problem(await refund(api, p_auth, done["id"]), 409, "INVALID_TRANSACTION_STATE")
    _, a_auth, a_wallet = await funded_user(api, "1.00")
    _, _, b_wallet = await funded_user(api, "0")
    failed = await move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "5.00")
    assert failed.status_code == 400
    tx_id = failed.json()["transaction_id"]
    assert_problem(await refund(api, a_auth, tx_id), 409, "INVALID_TRANSACTION_STATE")


async def test_concurrent_refunds_never_exceed_what_was_moved(api: httpx.AsyncClient) -> None:
    p_auth, p_wallet, m_auth, m_wallet, payment = await paid(api, "20.00")
    answers = await asyncio.gather(
        *(refund(api, m_auth, payment["id"], amount="3.00") for _ in range(10))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 6 + [400] * 4, [a.text for a in answers]
    for a in answers:
        if a.status_code == 400:
            assert a.json()["code"] == "REFUND_EXCEEDS_AMOUNT"
    assert await balance(api, m_auth, m_wallet["id"]) == "2.00"
    assert await balance(api, p_auth, p_wallet["id"]) == "48.00"
    original = (await api.get(f"/transactions/{payment['id']}", headers=m_auth)).json()
    assert original["refunded_amount"] == "18.00"


async def test_a_recipient_who_spent_the_money_fails_the_refund_and_can_retry_later(
    api: httpx.AsyncClient,
) -> None:
    _, a_auth, a_wallet = await funded_user(api, "30.00")
    _, b_auth, b_wallet = await funded_user(api, "0")
    _, _, c_wallet = await funded_user(api, "0")
    sent = (await move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "10.00")).json()
    spent = await move(api, b_auth, "transfer", b_wallet["id"], c_wallet["id"], "8.00")
    assert spent.status_code == 201
    failed = await refund(api, b_auth, sent["id"])  # 10.00 back, 2.00 available
    problem = assert_problem(failed, 400, "INSUFFICIENT_FUNDS")
    refund_tx = problem["transaction_id"]
    got = (await api.get(f"/transactions/{refund_tx}", headers=b_auth)).json()
    assert (got["type"], got["status"], got["failure_code"]) == (
        "refund",
        "FAILED",
        "INSUFFICIENT_FUNDS",
    )
    # The failed refund reserved nothing for good: what it asked is refundable again.
    ok = await refund(api, b_auth, sent["id"], amount="2.00")
    assert ok.status_code == 201, ok.text
    original = (await api.get(f"/transactions/{sent['id']}", headers=a_auth)).json()
    assert original["refunded_amount"] == "2.00"
    assert Decimal(await balance(api, a_auth, a_wallet["id"])) == Decimal("22.00")


async def test_a_refund_key_replays_its_answer_and_refunds_once(api: httpx.AsyncClient) -> None:
    p_auth, p_wallet, m_auth, _, payment = await paid(api, "10.00")
    key = f"refund-{uuid.uuid4()}"
    first = await refund(api, m_auth, payment["id"], key, amount="4.00")
    assert first.status_code == 201
    again = await asyncio.gather(
        *(refund(api, m_auth, payment["id"], key, amount="4.00") for _ in range(3))
    )
    for resp in again:
        assert resp.status_code == 201 and resp.json() == first.json()
        assert resp.headers["Idempotent-Replayed"] == "true"
    assert_problem(
        await refund(api, m_auth, payment["id"], key, amount="5.00"), 422, "IDEMPOTENCY_KEY_REUSED"
    )
    # The same key on another operation is another key (scoped per operation).
    assert await balance(api, p_auth, p_wallet["id"]) == "44.00"
    # Once nothing is left to refund, a replay still answers what its request did
    # (the key's answer comes before the checks that would now refuse it).
    rest_key = f"refund-rest-{uuid.uuid4()}"
    rest = await refund(api, m_auth, payment["id"], rest_key)
    assert rest.status_code == 201 and rest.json()["amount"] == "6.00"
    replayed = await refund(api, m_auth, payment["id"], rest_key)
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert (replayed.status_code, replayed.json()) == (201, rest.json())
    assert_problem(
        await refund(api, m_auth, payment["id"], f"refund-{uuid.uuid4()}"),
        400,
        "REFUND_EXCEEDS_AMOUNT",
    )
    assert await balance(api, p_auth, p_wallet["id"]) == "50.00"


async def test_a_deposit_goes_back_to_its_card_in_parts(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth, wallet = await funded_user(api, "0")
    dep = await deposit(api, auth, wallet["id"], "30.00")
    assert dep.status_code == 201
    d = dep.json()
    first = await refund(api, auth, d["id"], amount="12.50", reason="changed my mind")
    assert first.status_code == 201, first.text
    r = first.json()
    assert (r["type"], r["status"], r["amount"]) == ("refund", "COMPLETED", "12.50")
    assert (r["source_wallet_id"], r["destination_wallet_id"]) == (wallet["id"], None)
    assert await balance(api, auth, wallet["id"]) == "17.50"
    rest = await refund(api, auth, d["id"])
    assert rest.status_code == 201 and rest.json()["amount"] == "17.50"
    assert_problem(await refund(api, auth, d["id"]), 400, "REFUND_EXCEEDS_AMOUNT")
    assert await balance(api, auth, wallet["id"]) == "0.00"
    # The processor's own record: the whole charge back on the card, in two refunds.
    [charge] = await db_fetch(
        stack,
        "SELECT amount, refunded_amount FROM payment_gateway.payments WHERE transaction_id = $1",
        uuid.UUID(d["id"]),
    )
    assert (charge["amount"], charge["refunded_amount"]) == (3000, 3000)
    refunds = await db_fetch(
        stack,
        "SELECT r.refund_id, r.status FROM payment_gateway.card_refunds r"
        " JOIN payment_gateway.payments p ON p.id = r.payment_id WHERE p.transaction_id = $1",
        uuid.UUID(d["id"]),
    )
    assert {str(x["refund_id"]) for x in refunds} == {r["id"], rest.json()["id"]}
    assert {x["status"] for x in refunds} == {"succeeded"}


async def test_a_card_refund_the_processor_refuses_gives_the_money_back(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth, wallet = await funded_user(api, "0")
    d = (await deposit(api, auth, wallet["id"], "20.00")).json()
    # The processor refuses this charge's refunds (here: it says it refunded it all).
    await db_fetch(
        stack,
        "UPDATE payment_gateway.payments SET status = 'refunded' WHERE transaction_id = $1",
        uuid.UUID(d["id"]),
    )
    failed = await refund(api, auth, d["id"], amount="5.00")
    problem = assert_problem(failed, 400, "PAYMENT_GATEWAY_ERROR")
    got = (await api.get(f"/transactions/{problem['transaction_id']}", headers=auth)).json()
    assert (got["status"], got["failure_code"]) == ("FAILED", "PAYMENT_GATEWAY_ERROR")
    assert await balance(api, auth, wallet["id"]) == "20.00"  # debited, then given back
    original = (await api.get(f"/transactions/{d['id']}", headers=auth)).json()
    assert original["refunded_amount"] == "0.00"
    legs = await db_fetch(
        stack,
        "SELECT operation, amount FROM wallets.ledger_entries WHERE transaction_id = $1"
        " ORDER BY id",
        uuid.UUID(problem["transaction_id"]),
    )
    assert [(x["operation"], x["amount"]) for x in legs] == [("debit", -500), ("refund", 500)]


async def test_a_deposit_refund_needs_the_money_still_in_the_wallet(
    api: httpx.AsyncClient,
) -> None:
    _, auth, wallet = await funded_user(api, "0")
    _, _, other = await funded_user(api, "0")
    d = (await deposit(api, auth, wallet["id"], "10.00")).json()
    sent = await move(api, auth, "transfer", wallet["id"], other["id"], "6.00")
    assert sent.status_code == 201
    assert_problem(await refund(api, auth, d["id"]), 400, "INSUFFICIENT_FUNDS")
    assert await balance(api, auth, wallet["id"]) == "4.00"
    ok = await refund(api, auth, d["id"], amount="4.00")
    assert ok.status_code == 201, ok.text


async def card_refund_completed_once(
    api: httpx.AsyncClient,
    stack: Stack,
    auth: dict[str, str],
    wallet_id: str,
    deposit_id: str,
    refund_id: str,
) -> None:
    """After a crash in a 15.00 refund of a 40.00 deposit to its card: it completes
    once; the wallet debited once, the charge refunded once, one completed event."""

    async def ended() -> dict[str, Any] | None:
        got = (await api.get(f"/transactions/{refund_id}", headers=auth)).json()
        return got if got["status"] in ("COMPLETED", "FAILED") else None

    final = await eventually(ended, timeout=90)
    assert final["status"] == "COMPLETED"
    assert await balance(api, auth, wallet_id) == "25.00"
    [charge] = await db_fetch(
        stack,
        "SELECT refunded_amount FROM payment_gateway.payments WHERE transaction_id = $1",
        uuid.UUID(deposit_id),
    )
    assert charge["refunded_amount"] == 1500
    events = await kafka_events(stack, "transaction.completed", refund_id, 1)
    assert len({e["event_id"] for e in events}) == 1


async def test_transactions_killed_after_the_card_was_refunded_completes_the_refund_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # The crash window of a refund to a card: the wallet was debited and the processor
    # refunded the card; the transactions process dies (SIGKILL) before COMPLETED is
    # recorded. Recovery asks the processor again (idempotent per refund id): the card
    # is refunded once, the wallet debited once, the refund COMPLETED once.
    _, auth, wallet = await funded_user(api, "0")
    d = (await deposit(api, auth, wallet["id"], "40.00")).json()
    await arm_fault(stack, d["id"], "pause_mid_saga", seconds=60)
    request = asyncio.create_task(refund(api, auth, d["id"], amount="15.00"))

    async def card_refunded() -> list[Any]:
        return await db_fetch(
            stack,
            "SELECT r.refund_id, r.status FROM payment_gateway.card_refunds r"
            " JOIN payment_gateway.payments p ON p.id = r.payment_id WHERE p.transaction_id = $1",
            uuid.UUID(d["id"]),
        )

    (row,) = await eventually(card_refunded, timeout=30)
    stack.kill("transactions")
    assert (await request).status_code in (502, 503)  # no answer: the outcome unknown
    stack.start("transactions")
    refund_id = str(row["refund_id"])

    await card_refund_completed_once(api, stack, auth, wallet["id"], d["id"], refund_id)
    assert [(str(r["refund_id"]), r["status"]) for r in await card_refunded()] == [
        (refund_id, "succeeded")
    ]


async def test_wallets_killed_while_a_card_refund_debits_it_the_refund_happens_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # The other process of the same window: wallets frozen (SIGSTOP) while the refund's
    # debit reaches it, then SIGKILLed and started again. Whether the debit was made or
    # not, the saga (or recovery) asks again: one debit, one card refund, one end.
    _, auth, wallet = await funded_user(api, "0")
    d = (await deposit(api, auth, wallet["id"], "40.00")).json()
    os.kill(stack.procs["wallets"].pid, signal.SIGSTOP)
    try:
        request = asyncio.create_task(refund(api, auth, d["id"], amount="15.00"))
        await asyncio.sleep(1)
    finally:
        stack.kill("wallets")
    stack.start("wallets")
    assert (await request).status_code in (201, 502, 503)
    [row] = await db_fetch(
        stack,
        "SELECT id FROM transactions.transactions WHERE refunded_transaction_id = $1",
        uuid.UUID(d["id"]),
    )
    refund_id = str(row["id"])

    await card_refund_completed_once(api, stack, auth, wallet["id"], d["id"], refund_id)
    legs = await db_fetch(
        stack,
        "SELECT amount FROM wallets.ledger_entries WHERE transaction_id = $1",
        uuid.UUID(refund_id),
    )
    assert [r["amount"] for r in legs] == [-1500]
