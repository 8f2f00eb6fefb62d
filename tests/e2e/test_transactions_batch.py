"""POST /transactions/batch (issue 21): many transfers or payments in one request,
checked as a whole, then applied line by line in order through the same group commit
as single creates; and what a crash with a batch in flight leaves."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx

from tests.conftest import LEASE_SECONDS, Stack, eventually
from tests.e2e.helpers import assert_problem, kafka_events, user_with_token
from tests.e2e.money import arm_fault, balance, db_fetch, funded_user, uid, wallet_for


def item(src: str, dst: str, amount: str, kind: str = "transfer", **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "source_wallet_id": src,
        "destination_wallet_id": dst,
        "amount": amount,
        **extra,
    }


async def batch(
    api: httpx.AsyncClient, auth: dict[str, str], items: list[dict[str, Any]], **headers: str
) -> httpx.Response:
    return await api.post(
        "/transactions/batch", json={"items": items}, headers={**auth, **headers}, timeout=60
    )


async def count_from(stack: Stack, wallet_id: str) -> int:
    rows = await db_fetch(
        stack,
        "SELECT count(*) AS n FROM transactions.transactions WHERE source_wallet_id = $1",
        uid(wallet_id),
    )
    return int(rows[0]["n"])


async def test_items_go_in_order_and_one_lacking_funds_fails_alone(
    api: httpx.AsyncClient,
) -> None:
    _, auth, payer = await funded_user(api, "100.00")
    _, b_auth, b = await funded_user(api, "0")
    _, m_auth, shop = await funded_user(api, "0", account_type="merchant")
    items = [
        item(payer["id"], b["id"], "50.00", description="first"),
        item(payer["id"], b["id"], "80.00"),  # 50 left: refused, alone
        item(payer["id"], shop["id"], "30.00", kind="payment"),
        item(payer["id"], b["id"], "5.00", kind="payment"),  # b is not a merchant
        item(payer["id"], b["id"], "20.00"),
    ]
    resp = await batch(api, auth, items)
    assert resp.status_code == 200, resp.text
    out = resp.json()["items"]
    assert [(t["status"], t["failure_code"]) for t in out] == [
        ("COMPLETED", None),
        ("FAILED", "INSUFFICIENT_FUNDS"),
        ("COMPLETED", None),
        ("FAILED", "NOT_A_MERCHANT"),
        ("COMPLETED", None),  # the 20 that the items before it left
    ]
    assert [t["amount"] for t in out] == ["50.00", "80.00", "30.00", "5.00", "20.00"]
    assert out[0]["description"] == "first"
    assert await balance(api, auth, payer["id"]) == "0.00"
    assert await balance(api, b_auth, b["id"]) == "70.00"
    assert await balance(api, m_auth, shop["id"]) == "30.00"
    # Each item is a transaction like any other: readable, by both sides.
    for t in out:
        got = await api.get(f"/transactions/{t['id']}", headers=auth)
        assert got.status_code == 200 and got.json()["status"] == t["status"]


async def test_a_bad_item_or_a_wallet_not_found_refuses_the_whole_batch(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth, payer = await funded_user(api, "100.00")
    _, _, b = await funded_user(api, "0")
    _, other_auth, others = await funded_user(api, "10.00")
    good = item(payer["id"], b["id"], "1.00")
    cases: list[tuple[list[dict[str, Any]], int, str]] = [
        ([good, item(payer["id"], b["id"], "1.234")], 422, "VALIDATION_ERROR"),
        ([good, item(payer["id"], b["id"], "-1")], 422, "VALIDATION_ERROR"),
        ([good, {**good, "type": "deposit"}], 422, "VALIDATION_ERROR"),
        ([good, {**good, "capture": "manual"}], 422, "VALIDATION_ERROR"),
        ([good, item(payer["id"], str(uuid.uuid4()), "1.00")], 404, "WALLET_NOT_FOUND"),
        ([good, item(others["id"], b["id"], "1.00")], 404, "WALLET_NOT_FOUND"),
        ([], 422, "VALIDATION_ERROR"),
        ([good] * 1001, 422, "VALIDATION_ERROR"),
    ]
    for items, status, code in cases:
        resp = await batch(api, auth, items)
        problem = assert_problem(resp, status, code)
        if status == 422 and len(items) == 2:
            locs = [e["loc"] for e in problem["errors"]]
            assert any(loc[:2] == ["items", 1] for loc in locs), locs
    assert await count_from(stack, payer["id"]) == 0  # nothing stored, nothing moved
    assert await balance(api, auth, payer["id"]) == "100.00"
    assert await balance(api, other_auth, others["id"]) == "10.00"


async def test_a_replay_of_the_batch_key_answers_the_same_and_moves_nothing(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth, payer = await funded_user(api, "10.00")
    _, b_auth, b = await funded_user(api, "0")
    items = [item(payer["id"], b["id"], "4.00"), item(payer["id"], b["id"], "7.00")]
    key = {"Idempotency-Key": f"payroll-{uuid.uuid4()}"}
    first = await batch(api, auth, items, **key)
    assert first.status_code == 200, first.text
    again = await asyncio.gather(*(batch(api, auth, items, **key) for _ in range(3)))
    for resp in again:
        assert resp.status_code == 200 and resp.json() == first.json()
        assert resp.headers["Idempotent-Replayed"] == "true"
    reused = await batch(api, auth, items[:1], **key)
    assert_problem(reused, 422, "IDEMPOTENCY_KEY_REUSED")
    assert await count_from(stack, payer["id"]) == 2
    assert await balance(api, b_auth, b["id"]) == "4.00"


async def test_transactions_killed_with_a_batch_in_flight_ends_every_item_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth, payer = await funded_user(api, "100.00")
    _, b_auth, b = await funded_user(api, "0")
    user, c_auth = await user_with_token(api)
    c = await wallet_for(api, c_auth)
    # The batch stalls after wallets moved its money, before its end is recorded.
    await arm_fault(stack, c["id"], "pause_mid_saga", seconds=60)
    items = [item(payer["id"], b["id"], "10.00") for _ in range(8)]
    items[3] = item(payer["id"], c["id"], "10.00")
    items[5] = item(payer["id"], b["id"], "500.00")  # refused, in the same batch
    key = {"Idempotency-Key": f"crash-{uuid.uuid4()}"}
    request = asyncio.create_task(batch(api, auth, items, **key))

    async def moved() -> bool:
        return await balance(api, b_auth, b["id"]) == "60.00"

    await eventually(moved, timeout=30)
    stack.kill("transactions")  # SIGKILL: wallets committed the batch, nothing ended
    killed_at = time.monotonic()
    assert (await request).status_code == 503
    stack.start("transactions")
    ids = [
        str(r["id"])
        for r in await db_fetch(
            stack,
            "SELECT id FROM transactions.transactions WHERE source_wallet_id = $1"
            " ORDER BY batch_index",
            uid(payer["id"]),
        )
    ]
    assert len(ids) == 8

    async def replayed() -> dict[str, Any] | None:
        resp = await batch(api, auth, items, **key)
        return resp.json() if resp.status_code == 200 else None  # 409 while in flight

    out = (await eventually(replayed, timeout=90, interval=1))["items"]
    assert time.monotonic() - killed_at < 60 + 30
    assert [t["id"] for t in out] == ids
    assert [t["status"] for t in out] == ["COMPLETED"] * 5 + ["FAILED"] + ["COMPLETED"] * 2
    assert Decimal(await balance(api, auth, payer["id"])) == Decimal("30.00")
    assert await balance(api, c_auth, c["id"]) == "10.00"
    for tx_id, status in zip(ids, [t["status"] for t in out], strict=True):
        topic = "transaction.completed" if status == "COMPLETED" else "transaction.failed"
        events = await kafka_events(stack, topic, tx_id, 1, linger=0.5)
        assert len({e["event_id"] for e in events}) == len(events) == 1, tx_id
    assert user["id"]


async def test_wallets_killed_with_a_batch_in_flight_ends_every_item_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth, payer = await funded_user(api, "100.00")
    _, b_auth, b = await funded_user(api, "0")
    items = [item(payer["id"], b["id"], "0.25") for _ in range(200)]
    request = asyncio.create_task(batch(api, auth, items))
    await asyncio.sleep(0.3)
    stack.kill("wallets")
    response = await request
    assert response.status_code in (200, 503), response.text
    stack.start("wallets")

    async def all_ended() -> list[Any] | None:
        rows = await db_fetch(
            stack,
            "SELECT status, count(*) AS n FROM transactions.transactions"
            " WHERE source_wallet_id = $1 GROUP BY status",
            uid(payer["id"]),
        )
        counts = {r["status"]: r["n"] for r in rows}
        return rows if set(counts) <= {"COMPLETED", "FAILED"} and sum(counts.values()) else None

    rows = await eventually(all_ended, timeout=90, interval=1)
    counts = {r["status"]: r["n"] for r in rows}
    assert counts == {"COMPLETED": 200}, counts
    assert await balance(api, auth, payer["id"]) == "50.00"
    assert await balance(api, b_auth, b["id"]) == "50.00"


async def test_a_batch_the_recovery_worker_ended_answers_what_its_replays_answer(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # Its group waits on wallets beyond the lease (after the money moved): the recovery
    # worker takes the items over and ends them. The request's answer is its key's for
    # ever: a refund between it and a replay does not make the replay answer otherwise
    # (the request answered from the items as they stood, stored nothing, and a later
    # replay made the key's answer from the refunded item).
    _, auth, payer = await funded_user(api, "20.00")
    _, b_auth, b = await funded_user(api, "0")
    await arm_fault(stack, b["id"], "pause_mid_saga", seconds=LEASE_SECONDS + 8)
    items = [item(payer["id"], b["id"], "4.00"), item(payer["id"], b["id"], "7.00")]
    key = {"Idempotency-Key": f"late-{uuid.uuid4()}"}
    first = await batch(api, auth, items, **key)
    assert first.status_code == 200, first.text
    out = first.json()["items"]
    assert [(t["status"], t["refunded_amount"]) for t in out] == [("COMPLETED", "0.00")] * 2
    tried = await db_fetch(
        stack,
        "SELECT attempts FROM transactions.transactions WHERE id = $1",
        uid(out[0]["id"]),
    )
    assert tried[0]["attempts"] > 1  # the recovery worker's claim
    refunded = await api.post(
        f"/transactions/{out[0]['id']}/refund", json={"amount": "1.00"}, headers=b_auth
    )
    assert refunded.status_code == 201, refunded.text
    again = await batch(api, auth, items, **key)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert (again.status_code, again.json()) == (200, first.json())
