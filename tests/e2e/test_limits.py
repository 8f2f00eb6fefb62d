"""Spending limits (issue 24), through the gateway: per transaction, per UTC day and
per UTC month; owners lower them, never above the maximum; a transfer, payment,
authorization or batch item that would pass one fails with LIMIT_EXCEEDED and moves
nothing; concurrent requests never pass a limit together."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from paysys.kit.mongo import make_mongo
from tests.conftest import Stack, eventually
from tests.e2e.helpers import assert_problem
from tests.e2e.money import balance, funded_user, move

Auth = dict[str, str]


async def limits(api: httpx.AsyncClient, auth: Auth, wallet_id: str) -> dict[str, Any]:
    resp = await api.get(f"/wallets/{wallet_id}/limits", headers=auth)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def set_limits(
    api: httpx.AsyncClient, auth: Auth, wallet_id: str, **body: Any
) -> httpx.Response:
    return await api.put(f"/wallets/{wallet_id}/limits", json=body, headers=auth)


async def test_limits_start_at_the_maximums_of_the_account_type(api: httpx.AsyncClient) -> None:
    _, auth, wallet = await funded_user(api, "0")
    body = await limits(api, auth, wallet["id"])
    assert body == {
        "wallet_id": wallet["id"],
        "currency": "USD",
        "per_transaction": "10000.00",
        "daily": "20000.00",
        "monthly": "50000.00",
        "spent_today": "0.00",
        "spent_this_month": "0.00",
        "maximum": {"per_transaction": "10000.00", "daily": "20000.00", "monthly": "50000.00"},
    }
    _, m_auth, shop = await funded_user(api, "0", account_type="merchant")
    merchant = await limits(api, m_auth, shop["id"])
    assert merchant["maximum"] == {
        "per_transaction": "1000000.00",
        "daily": "5000000.00",
        "monthly": "50000000.00",
    }


async def test_owners_lower_their_limits_never_above_the_maximum(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user, auth, wallet = await funded_user(api, "0")
    wid = wallet["id"]
    resp = await set_limits(api, auth, wid, daily="50.00")
    assert resp.status_code == 200, resp.text
    assert (resp.json()["per_transaction"], resp.json()["daily"]) == ("10000.00", "50.00")
    resp = await set_limits(api, auth, wid, monthly="400.00")  # daily left out: kept
    assert (resp.json()["daily"], resp.json()["monthly"]) == ("50.00", "400.00")
    resp = await set_limits(api, auth, wid, daily=None)  # null: the maximum again
    assert (resp.json()["daily"], resp.json()["monthly"]) == ("20000.00", "400.00")

    body = assert_problem(
        await set_limits(api, auth, wid, daily="20000.01"), 422, "LIMIT_ABOVE_MAXIMUM"
    )
    assert body["maximum"] == "20000.00"
    for bad in (
        {"daily": "abc"},
        {"daily": "1.234"},
        {"daily": 50},
        {"daily": "0"},
        {"weekly": "1.00"},
    ):
        assert_problem(await set_limits(api, auth, wid, **bad), 422, "VALIDATION_ERROR")
    # Nothing of a refused change was kept.
    assert (await limits(api, auth, wid))["monthly"] == "400.00"
    assert (await limits(api, auth, wid))["daily"] == "20000.00"
    # Not bound by the per-transaction amount maximum of the API (1,000,000.00).
    _, m_auth, shop = await funded_user(api, "0", account_type="merchant")
    resp = await set_limits(api, m_auth, shop["id"], daily="4000000.00")
    assert resp.status_code == 200, resp.text

    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:

        async def audited() -> list[dict[str, Any]]:
            cursor = db.audit_log.find(
                {"action": "wallet.limits_changed", "actor_user_id": user["id"]}
            )
            return [d async for d in cursor]

        records = await eventually(lambda: _at_least(audited, 3), timeout=30)
        assert {r["details"]["wallet_id"] for r in records} == {wid}
    finally:
        await client.close()


async def _at_least(fetch: Any, n: int) -> Any:
    found = await fetch()
    return found if len(found) >= n else None


async def test_a_transfer_past_a_limit_fails_and_moves_nothing(api: httpx.AsyncClient) -> None:
    _, auth, wallet = await funded_user(api, "100.00")
    _, o_auth, other = await funded_user(api, "0")
    await set_limits(api, auth, wallet["id"], per_transaction="25.00", daily="40.00")
    exact = await move(api, auth, "transfer", wallet["id"], other["id"], "25.00")
    assert exact.status_code == 201, exact.text  # reaching a limit exactly is allowed
    over = await move(api, auth, "transfer", wallet["id"], other["id"], "25.01")
    body = assert_problem(over, 400, "LIMIT_EXCEEDED")
    tx = (await api.get(f"/transactions/{body['transaction_id']}", headers=auth)).json()
    assert (tx["status"], tx["failure_code"]) == ("FAILED", "LIMIT_EXCEEDED")
    day = await move(api, auth, "transfer", wallet["id"], other["id"], "15.01")  # 40.01 today
    assert_problem(day, 400, "LIMIT_EXCEEDED")
    assert await balance(api, auth, wallet["id"]) == "75.00"
    now = await limits(api, auth, wallet["id"])
    assert (now["spent_today"], now["spent_this_month"]) == ("25.00", "25.00")
    ok = await move(api, auth, "transfer", wallet["id"], other["id"], "15.00")
    assert ok.status_code == 201, ok.text
    assert (await limits(api, auth, wallet["id"]))["spent_today"] == "40.00"
    # Incoming money and deposits count for nothing.
    assert (await limits(api, o_auth, other["id"]))["spent_today"] == "0.00"


async def test_twenty_concurrent_transfers_against_a_daily_limit_of_ten(
    api: httpx.AsyncClient,
) -> None:
    _, auth, wallet = await funded_user(api, "100.00")
    _, _, other = await funded_user(api, "0")
    await set_limits(api, auth, wallet["id"], daily="10.00")
    answers = await asyncio.gather(
        *[move(api, auth, "transfer", wallet["id"], other["id"], "1.00") for _ in range(20)]
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] * 10 + [400] * 10, codes
    assert {r.json()["code"] for r in answers if r.status_code == 400} == {"LIMIT_EXCEEDED"}
    assert await balance(api, auth, wallet["id"]) == "90.00"
    assert (await limits(api, auth, wallet["id"]))["spent_today"] == "10.00"


async def test_authorizations_count_when_held_and_give_back_what_is_not_taken(
    api: httpx.AsyncClient,
) -> None:
    _, auth, wallet = await funded_user(api, "100.00")
    _, m_auth, shop = await funded_user(api, "0", account_type="merchant")
    await set_limits(api, auth, wallet["id"], daily="50.00")

    async def authorize(amount: str) -> httpx.Response:
        return await move(api, auth, "payment", wallet["id"], shop["id"], amount, capture="manual")

    first = await authorize("30.00")
    assert first.status_code == 201, first.text
    assert (await limits(api, auth, wallet["id"]))["spent_today"] == "30.00"
    assert_problem(await authorize("30.00"), 400, "LIMIT_EXCEEDED")
    voided = await api.post(f"/transactions/{first.json()['id']}/void", headers=auth)
    assert voided.status_code == 200, voided.text
    assert (await limits(api, auth, wallet["id"]))["spent_today"] == "0.00"
    second = await authorize("40.00")
    assert second.status_code == 201, second.text
    captured = await api.post(
        f"/transactions/{second.json()['id']}/capture", json={"amount": "10.00"}, headers=m_auth
    )
    assert captured.status_code == 200, captured.text
    spent = await limits(api, auth, wallet["id"])
    assert (spent["spent_today"], spent["spent_this_month"]) == ("10.00", "10.00")
    assert await balance(api, auth, wallet["id"]) == "90.00"


async def test_batch_items_count_one_by_one(api: httpx.AsyncClient) -> None:
    _, auth, wallet = await funded_user(api, "100.00")
    _, _, other = await funded_user(api, "0")
    await set_limits(api, auth, wallet["id"], daily="3.00")
    items = [
        {
            "type": "transfer",
            "source_wallet_id": wallet["id"],
            "destination_wallet_id": other["id"],
            "amount": "1.00",
        }
        for _ in range(5)
    ]
    resp = await api.post("/transactions/batch", json={"items": items}, headers=auth, timeout=60)
    assert resp.status_code == 200, resp.text
    outcomes = [(t["status"], t["failure_code"]) for t in resp.json()["items"]]
    assert outcomes == [("COMPLETED", None)] * 3 + [("FAILED", "LIMIT_EXCEEDED")] * 2
    assert await balance(api, auth, wallet["id"]) == "97.00"
