"""The seed flows end to end through the gateway: deposit, transfer, payment."""

from __future__ import annotations

import httpx

from paysys.kit.mongo import make_mongo
from tests.conftest import Stack, eventually
from tests.e2e.helpers import assert_problem, kafka_events, mails_to, user_with_token
from tests.e2e.money import balance, deposit, funded_user, move, wallet_for


async def mongo_log(stack: Stack, tx_id: str) -> dict:  # type: ignore[type-arg]
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:

        async def found() -> dict | None:  # type: ignore[type-arg]
            return await db.transaction_logs.find_one({"transaction_id": tx_id})

        doc = await eventually(found, timeout=30)
        assert await db.transaction_logs.count_documents({"transaction_id": tx_id}) == 1
        return doc  # type: ignore[no-any-return]
    finally:
        await client.close()


async def mail_kinds(stack: Stack, email: str, n: int) -> list[str]:
    async def got() -> list[object]:
        mails = mails_to(stack.infra.inbox, email)
        return mails if len(mails) >= n else []

    return [m["Subject"] for m in await eventually(got, timeout=60)]  # type: ignore[index]


async def test_deposit_with_a_good_card_credits_the_wallet_and_tells_everyone(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    resp = await deposit(api, auth, wallet["id"], "25.50", description="top up")
    assert resp.status_code == 201, resp.text
    tx = resp.json()
    assert tx["status"] == "COMPLETED"
    assert tx["type"] == "deposit"
    assert tx["amount"] == "25.50"
    assert tx["currency"] == "USD"
    assert tx["source_wallet_id"] is None
    assert tx["destination_wallet_id"] == wallet["id"]
    assert tx["failure_code"] is None
    assert tx["description"] == "top up"
    assert await balance(api, auth, wallet["id"]) == "25.50"
    assert (await api.get(f"/transactions/{tx['id']}", headers=auth)).json() == tx

    [payment] = await kafka_events(
        stack,
        "payment.processed",
        None,
        1,
        where=lambda e: e["data"]["transaction_id"] == tx["id"],
    )
    assert payment["data"]["status"] == "succeeded"
    assert payment["data"]["card_last4"] == "4242"
    assert payment["data"]["card_brand"] == "visa"
    assert "4242424242424242" not in str(payment)
    [added] = await kafka_events(stack, "wallet.funds_added", wallet["id"], 1)
    assert added["data"]["amount"] == "25.50"
    assert added["data"]["balance"] == "25.50"
    assert added["data"]["transaction_id"] == tx["id"]
    [done] = await kafka_events(stack, "transaction.completed", tx["id"], 1)
    assert done["data"]["destination_user_id"] == user["id"]
    assert done["data"]["source_user_id"] is None
    doc = await mongo_log(stack, tx["id"])
    assert doc["status"] == "COMPLETED"
    assert [s["step"] for s in doc["steps"]] == ["created", "charge", "credit"]
    subjects = await mail_kinds(stack, user["email"], 2)
    assert any("deposit" in s for s in subjects)


async def test_transfer_moves_money_and_tells_both_sides(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    alice, a_auth, a_wallet = await funded_user(api, "100.00")
    bob, b_auth, b_wallet = await funded_user(api, "0")
    resp = await move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "30.25")
    assert resp.status_code == 201, resp.text
    tx = resp.json()
    assert tx["status"] == "COMPLETED"
    assert await balance(api, a_auth, a_wallet["id"]) == "69.75"
    assert await balance(api, b_auth, b_wallet["id"]) == "30.25"
    [debit] = await kafka_events(
        stack,
        "wallet.funds_deducted",
        a_wallet["id"],
        1,
        where=lambda e: e["data"]["transaction_id"] == tx["id"],
    )
    assert debit["data"]["amount"] == "30.25"
    [credit] = await kafka_events(stack, "wallet.funds_added", b_wallet["id"], 1)
    assert credit["data"]["transaction_id"] == tx["id"]
    # both sides see it
    assert (await api.get(f"/transactions/{tx['id']}", headers=b_auth)).status_code == 200
    assert any("sent" in s for s in await mail_kinds(stack, alice["email"], 3))
    assert any("received" in s for s in await mail_kinds(stack, bob["email"], 2))
    assert (await mongo_log(stack, tx["id"]))["status"] == "COMPLETED"


async def test_payment_to_a_merchant_and_refused_to_a_non_merchant(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, c_auth, c_wallet = await funded_user(api, "50.00")
    merchant, m_auth, m_wallet = await funded_user(api, "0", account_type="merchant")
    _, _, person_wallet = await funded_user(api, "0")
    resp = await move(api, c_auth, "payment", c_wallet["id"], m_wallet["id"], "20.00")
    assert resp.status_code == 201, resp.text
    assert await balance(api, c_auth, c_wallet["id"]) == "30.00"
    assert await balance(api, m_auth, m_wallet["id"]) == "20.00"
    assert any("paid" in s for s in await mail_kinds(stack, merchant["email"], 2))

    refused = await move(api, c_auth, "payment", c_wallet["id"], person_wallet["id"], "5.00")
    body = assert_problem(refused, 400, "NOT_A_MERCHANT")
    failed = (await api.get(f"/transactions/{body['transaction_id']}", headers=c_auth)).json()
    assert failed["status"] == "FAILED"
    assert failed["failure_code"] == "NOT_A_MERCHANT"
    assert await balance(api, c_auth, c_wallet["id"]) == "30.00"
