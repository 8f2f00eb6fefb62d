"""Authorize now, capture later (issue 22): a manual-capture payment holds the payer's
money; the merchant captures all or part of it, the payer or the merchant voids it, or
it expires by itself. Of a capture, a void and an expiry racing, exactly one wins; held
money is never spent twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from tests.conftest import LEASE_SECONDS, Stack, eventually
from tests.e2e.helpers import assert_problem, internal_client, kafka_events, mails_to
from tests.e2e.money import arm_fault, db_fetch, funded_user, move, uid


async def wallet(api: httpx.AsyncClient, auth: dict[str, str], wallet_id: str) -> dict[str, Any]:
    resp = await api.get(f"/wallets/{wallet_id}", headers=auth)
    assert resp.status_code == 200, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def balances(api: httpx.AsyncClient, auth: dict[str, str], wallet_id: str) -> tuple[str, ...]:
    w = await wallet(api, auth, wallet_id)
    return w["balance"], w["held_balance"], w["available_balance"]


PAYER_EMAIL: dict[str, str] = {}  # payer wallet id -> the payer's address


async def authorized(
    api: httpx.AsyncClient, amount: str = "30.00", funds: str = "50.00", **extra: Any
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any], dict[str, str], dict[str, Any]]:
    """(payer wallet, payer auth, merchant wallet, merchant auth, the authorization)."""
    payer, p_auth, p_wallet = await funded_user(api, funds)
    PAYER_EMAIL[p_wallet["id"]] = payer["email"]
    _, m_auth, m_wallet = await funded_user(api, "0", account_type="merchant")
    resp = await move(
        api, p_auth, "payment", p_wallet["id"], m_wallet["id"], amount, capture="manual", **extra
    )
    assert resp.status_code == 201, resp.text
    return p_wallet, p_auth, m_wallet, m_auth, resp.json()


async def step(
    api: httpx.AsyncClient,
    auth: dict[str, str],
    tx_id: str,
    name: str,
    key: str | None = None,
    **body: str,
) -> httpx.Response:
    headers = {**auth, **({"Idempotency-Key": key} if key else {})}
    return await api.post(f"/transactions/{tx_id}/{name}", json=body, headers=headers)


async def attempts(stack: Stack, tx_id: str) -> int:
    """How many runners have claimed the transaction (the recovery worker counts)."""
    rows = await db_fetch(
        stack, "SELECT attempts FROM transactions.transactions WHERE id = $1", uid(tx_id)
    )
    return int(rows[0]["attempts"])


async def held_matches_open_holds(stack: Stack) -> None:
    """The invariant the database keeps: a wallet's held_balance is the sum of its open
    holds, and never above its balance."""
    wrong = await db_fetch(
        stack,
        "SELECT w.id FROM wallets.wallets w LEFT JOIN (SELECT wallet_id, sum(amount) AS s"
        " FROM wallets.holds WHERE status = 'open' GROUP BY 1) h ON h.wallet_id = w.id"
        " WHERE w.held_balance <> coalesce(h.s, 0) OR w.held_balance > w.balance",
    )
    assert wrong == []


async def test_an_authorization_holds_the_money_and_a_partial_capture_takes_part(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    p_wallet, p_auth, m_wallet, m_auth, auth_tx = await authorized(api, "30.00")
    assert auth_tx["status"] == "AUTHORIZED"
    assert auth_tx["captured_amount"] is None
    assert auth_tx["authorization_expires_at"] is not None
    assert await balances(api, p_auth, p_wallet["id"]) == ("50.00", "30.00", "20.00")
    assert await balances(api, m_auth, m_wallet["id"]) == ("0.00", "0.00", "0.00")
    # Held money cannot be spent elsewhere.
    _, _, other = await funded_user(api, "0")
    spend = await move(api, p_auth, "transfer", p_wallet["id"], other["id"], "25.00")
    assert_problem(spend, 400, "INSUFFICIENT_FUNDS")

    captured = await step(api, m_auth, auth_tx["id"], "capture", amount="12.50")
    assert captured.status_code == 200, captured.text
    c = captured.json()
    assert (c["status"], c["amount"], c["captured_amount"]) == ("COMPLETED", "30.00", "12.50")
    # The whole hold is released; only what was captured left the payer.
    assert await balances(api, p_auth, p_wallet["id"]) == ("37.50", "0.00", "37.50")
    assert await balances(api, m_auth, m_wallet["id"]) == ("12.50", "0.00", "12.50")
    assert_problem(
        await step(api, m_auth, auth_tx["id"], "capture"), 409, "INVALID_TRANSACTION_STATE"
    )

    # The payer's wallet events, in order: held, released, deducted.
    tx = auth_tx["id"]
    held = await kafka_events(
        stack,
        "wallet.funds_held",
        p_wallet["id"],
        1,
        where=lambda e: e["data"]["transaction_id"] == tx,
    )
    released = await kafka_events(
        stack,
        "wallet.funds_released",
        p_wallet["id"],
        1,
        where=lambda e: e["data"]["transaction_id"] == tx,
    )
    assert [e["data"]["held_balance"] for e in held] == ["30.00"]
    assert [(e["data"]["amount"], e["data"]["held_balance"]) for e in released] == [
        ("30.00", "0.00")
    ]
    for topic in ("transaction.authorized", "transaction.completed"):
        events = await kafka_events(stack, topic, tx, 1)
        assert len(events) == 1
    completed = (await kafka_events(stack, "transaction.completed", tx, 1))[0]
    assert completed["data"]["captured_amount"] == "12.50"

    # A refund gives back at most what was captured.
    assert_problem(
        await step(api, m_auth, tx, "refund", amount="13.00"), 400, "REFUND_EXCEEDS_AMOUNT"
    )
    back = await step(api, m_auth, tx, "refund")
    assert back.status_code == 201 and back.json()["amount"] == "12.50"
    assert await balances(api, p_auth, p_wallet["id"]) == ("50.00", "0.00", "50.00")
    await held_matches_open_holds(stack)


async def test_who_may_capture_or_void_and_what_is_refused(api: httpx.AsyncClient) -> None:
    p_wallet, p_auth, m_wallet, m_auth, auth_tx = await authorized(api, "10.00")
    tx = auth_tx["id"]
    _, stranger, _ = await funded_user(api, "0")
    assert_problem(await step(api, stranger, tx, "capture"), 404, "TRANSACTION_NOT_FOUND")
    assert_problem(await step(api, stranger, tx, "void"), 404, "TRANSACTION_NOT_FOUND")
    assert_problem(await step(api, m_auth, str(uuid.uuid4()), "void"), 404, "TRANSACTION_NOT_FOUND")
    assert_problem(await step(api, p_auth, tx, "capture"), 403, "FORBIDDEN")
    assert_problem(
        await step(api, m_auth, tx, "capture", amount="10.01"), 400, "AMOUNT_EXCEEDS_AUTHORIZED"
    )
    assert_problem(await step(api, m_auth, tx, "capture", amount="0"), 422, "VALIDATION_ERROR")
    assert await balances(api, p_auth, p_wallet["id"]) == ("50.00", "10.00", "40.00")
    # The payer voids: the money is available again, nothing moved.
    voided = await step(api, p_auth, tx, "void")
    assert voided.status_code == 200, voided.text
    assert (voided.json()["status"], voided.json()["failure_code"]) == ("VOIDED", None)
    assert await balances(api, p_auth, p_wallet["id"]) == ("50.00", "0.00", "50.00")
    assert await balances(api, m_auth, m_wallet["id"]) == ("0.00", "0.00", "0.00")
    assert_problem(await step(api, m_auth, tx, "capture"), 409, "INVALID_TRANSACTION_STATE")
    assert_problem(await step(api, m_auth, tx, "void"), 409, "INVALID_TRANSACTION_STATE")
    assert_problem(await step(api, m_auth, tx, "refund"), 409, "INVALID_TRANSACTION_STATE")
    listed = (await api.get("/transactions?status=VOIDED", headers=m_auth)).json()["items"]
    assert [t["id"] for t in listed] == [tx]
    # A completed payment, a transfer: nothing to capture or void.
    paid = await move(api, p_auth, "payment", p_wallet["id"], m_wallet["id"], "1.00")
    assert_problem(
        await step(api, m_auth, paid.json()["id"], "capture"), 409, "INVALID_TRANSACTION_STATE"
    )
    assert_problem(
        await step(api, p_auth, paid.json()["id"], "void"), 409, "INVALID_TRANSACTION_STATE"
    )


async def test_an_authorization_asks_what_a_payment_asks(api: httpx.AsyncClient) -> None:
    _, p_auth, p_wallet = await funded_user(api, "5.00")
    _, m_auth, m_wallet = await funded_user(api, "0", account_type="merchant")
    _, _, person = await funded_user(api, "0")
    src, dst = p_wallet["id"], m_wallet["id"]
    too_much = await move(api, p_auth, "payment", src, dst, "5.01", capture="manual")
    problem = assert_problem(too_much, 400, "INSUFFICIENT_FUNDS")
    got = (await api.get(f"/transactions/{problem['transaction_id']}", headers=p_auth)).json()
    assert (got["status"], got["failure_code"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    not_merchant = await move(api, p_auth, "payment", src, person["id"], "1.00", capture="manual")
    assert_problem(not_merchant, 400, "NOT_A_MERCHANT")
    # A lifetime: only with a manual capture, and at most the configured maximum.
    no_manual = await move(api, p_auth, "payment", src, dst, "1.00", authorization_ttl_seconds=60)
    assert_problem(no_manual, 422, "VALIDATION_ERROR")
    too_long = await move(
        api,
        p_auth,
        "payment",
        src,
        dst,
        "1.00",
        capture="manual",
        authorization_ttl_seconds=604_801,
    )
    assert_problem(too_long, 422, "VALIDATION_ERROR")
    assert_problem(
        await move(api, p_auth, "payment", src, dst, "1.00", capture="later"),
        422,
        "VALIDATION_ERROR",
    )
    # A batch moves money at once: no manual capture in it.
    item = {
        "type": "payment",
        "source_wallet_id": src,
        "destination_wallet_id": dst,
        "amount": "1.00",
    }
    batch = await api.post(
        "/transactions/batch", json={"items": [item, {**item, "capture": "manual"}]}, headers=p_auth
    )
    problem = assert_problem(batch, 422, "VALIDATION_ERROR")
    assert problem["errors"][0]["loc"][:3] == ["items", 1, "capture"]
    assert await balances(api, p_auth, src) == ("5.00", "0.00", "5.00")
    # Deactivated meanwhile: a capture is refused, the authorization waits as it was.
    ok = await move(api, p_auth, "payment", src, dst, "2.00", capture="manual")
    assert ok.status_code == 201
    assert (await api.post(f"/wallets/{dst}/deactivate", headers=m_auth)).status_code == 200
    refused = await step(api, m_auth, ok.json()["id"], "capture", key="cap-1")
    assert_problem(refused, 400, "WALLET_INACTIVE")
    got = (await api.get(f"/transactions/{ok.json()['id']}", headers=p_auth)).json()
    assert got["status"] == "AUTHORIZED"
    assert (await api.post(f"/wallets/{dst}/activate", headers=m_auth)).status_code == 200
    # The refused capture's key was let go: the same key now captures, then replays.
    captured = await step(api, m_auth, ok.json()["id"], "capture", key="cap-1")
    assert captured.status_code == 200 and captured.json()["captured_amount"] == "2.00"
    again = await step(api, m_auth, ok.json()["id"], "capture", key="cap-1")
    assert again.json() == captured.json() and again.headers.get("idempotent-replayed") == "true"
    assert await balances(api, p_auth, src) == ("3.00", "0.00", "3.00")


async def test_an_uncaptured_authorization_expires_by_itself(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    p_wallet, p_auth, _, m_auth, auth_tx = await authorized(
        api, "7.00", authorization_ttl_seconds=1
    )
    tx = auth_tx["id"]

    async def voided() -> dict[str, Any] | None:
        got = (await api.get(f"/transactions/{tx}", headers=p_auth)).json()
        return got if got["status"] == "VOIDED" else None

    started = time.monotonic()
    got = await eventually(voided, timeout=15)
    assert time.monotonic() - started < 11  # within 10 s of its expiry (1 s after it)
    assert got["failure_code"] == "AUTHORIZATION_EXPIRED"
    assert await balances(api, p_auth, p_wallet["id"]) == ("50.00", "0.00", "50.00")
    assert_problem(await step(api, m_auth, tx, "capture"), 409, "INVALID_TRANSACTION_STATE")
    assert len(await kafka_events(stack, "transaction.voided", tx, 1)) == 1

    # The payer is told, once.
    async def told() -> list[object]:
        return [
            m
            for m in mails_to(stack.infra.inbox, PAYER_EMAIL[p_wallet["id"]])
            if "authorization" in str(m["Subject"])  # type: ignore[index]
        ]

    mails = await eventually(told, timeout=60)
    assert len(mails) == 1
    await held_matches_open_holds(stack)


async def ended(api: httpx.AsyncClient, tx: str, auth: dict[str, str]) -> dict[str, Any] | None:
    got = (await api.get(f"/transactions/{tx}", headers=auth)).json()
    return got if got["status"] in ("COMPLETED", "VOIDED") else None  # type: ignore[no-any-return]


async def test_a_capture_a_void_and_the_expiry_racing_end_it_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    for _ in range(3):
        p_wallet, p_auth, m_wallet, m_auth, auth_tx = await authorized(
            api, "10.00", authorization_ttl_seconds=2
        )
        tx = auth_tx["id"]
        expires = auth_tx["authorization_expires_at"]
        # Fired together just before the expiry, which the recovery worker races too.
        await asyncio.sleep(1.8)
        answers = await asyncio.gather(
            step(api, m_auth, tx, "capture"),
            step(api, p_auth, tx, "void"),
            step(api, m_auth, tx, "void"),
        )
        won = [a for a in answers if a.status_code == 200]
        assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
        assert len(won) <= 1, [a.text for a in answers]

        final = await eventually(lambda tx=tx, auth=p_auth: ended(api, tx, auth), timeout=15)
        if won:
            assert won[0].json()["status"] == final["status"]
        else:
            assert final["failure_code"] == "AUTHORIZATION_EXPIRED", expires
        p = await balances(api, p_auth, p_wallet["id"])
        m = await balances(api, m_auth, m_wallet["id"])
        if final["status"] == "COMPLETED":
            assert (p, m) == (("40.00", "0.00", "40.00"), ("10.00", "0.00", "10.00"))
        else:
            assert (p, m) == (("50.00", "0.00", "50.00"), ("0.00", "0.00", "0.00"))
        ends = await kafka_events(stack, "transaction." + final["status"].lower(), tx, 1)
        assert len(ends) == 1
    await held_matches_open_holds(stack)


async def test_a_transfer_and_an_authorization_race_for_the_last_money(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    for _ in range(3):
        _, p_auth, p_wallet = await funded_user(api, "10.00")
        _, _, m_wallet = await funded_user(api, "0", account_type="merchant")
        _, _, other = await funded_user(api, "0")
        src = p_wallet["id"]
        hold, send = await asyncio.gather(
            move(api, p_auth, "payment", src, m_wallet["id"], "8.00", capture="manual"),
            move(api, p_auth, "transfer", src, other["id"], "8.00"),
        )
        assert sorted([hold.status_code, send.status_code]) == [201, 400], (hold.text, send.text)
        b, h, a = await balances(api, p_auth, src)
        assert (b, h, a) in (("10.00", "8.00", "2.00"), ("2.00", "0.00", "2.00"))
    await held_matches_open_holds(stack)


async def test_a_capture_key_replays_and_captures_once(api: httpx.AsyncClient) -> None:
    p_wallet, p_auth, m_wallet, m_auth, auth_tx = await authorized(api, "10.00")
    key = f"cap-{uuid.uuid4()}"
    answers = await asyncio.gather(
        *(step(api, m_auth, auth_tx["id"], "capture", key, amount="4.00") for _ in range(4))
    )
    ok = [a for a in answers if a.status_code == 200]
    assert ok and all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    again = await step(api, m_auth, auth_tx["id"], "capture", key, amount="4.00")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == ok[0].json()
    assert_problem(
        await step(api, m_auth, auth_tx["id"], "capture", key, amount="5.00"),
        422,
        "IDEMPOTENCY_KEY_REUSED",
    )
    assert await balances(api, p_auth, p_wallet["id"]) == ("46.00", "0.00", "46.00")
    assert await balances(api, m_auth, m_wallet["id"]) == ("4.00", "0.00", "4.00")


async def ended_once(
    api: httpx.AsyncClient,
    stack: Stack,
    end: str,
    tx: str,
    p_wallet: dict[str, Any],
    p_auth: dict[str, str],
    m_wallet: dict[str, Any],
    m_auth: dict[str, str],
) -> dict[str, Any]:
    """After a crash in one end of a 10.00 authorization (of 50.00): it ends once, as
    that end says, with the balances, one terminal event and the holds right."""
    final = await eventually(lambda: ended(api, tx, p_auth), timeout=90)
    want = "COMPLETED" if end == "capture" else "VOIDED"
    assert final["status"] == want
    if want == "COMPLETED":
        assert await balances(api, p_auth, p_wallet["id"]) == ("40.00", "0.00", "40.00")
        assert await balances(api, m_auth, m_wallet["id"]) == ("10.00", "0.00", "10.00")
    else:
        assert await balances(api, p_auth, p_wallet["id"]) == ("50.00", "0.00", "50.00")
    events = await kafka_events(stack, "transaction." + want.lower(), tx, 1)
    assert len({e["event_id"] for e in events}) == len(events) == 1
    await held_matches_open_holds(stack)
    return final  # type: ignore[no-any-return]


async def test_transactions_killed_after_wallets_held_the_money_authorizes_once_by_recovery(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # An authorization goes with its group to wallets, which holds the money; the
    # transactions process dies (SIGKILL) before AUTHORIZED is recorded. The recovery
    # worker ends it AUTHORIZED, once, and it is captured as any other.
    _, p_auth, p_wallet = await funded_user(api, "50.00")
    _, m_auth, m_wallet = await funded_user(api, "0", account_type="merchant")
    await arm_fault(stack, m_wallet["id"], "pause_mid_saga", seconds=60)
    request = asyncio.create_task(
        move(api, p_auth, "payment", p_wallet["id"], m_wallet["id"], "30.00", capture="manual")
    )

    async def held() -> bool:
        return (await balances(api, p_auth, p_wallet["id"]))[1] == "30.00"

    await eventually(held, timeout=30)
    stack.kill("transactions")
    assert (await request).status_code in (502, 503)  # no answer: the outcome unknown
    stack.start("transactions")
    [row] = await db_fetch(
        stack,
        "SELECT id FROM transactions.transactions WHERE source_wallet_id = $1",
        uid(p_wallet["id"]),
    )
    tx = str(row["id"])

    async def authorized_now() -> dict[str, Any] | None:
        found = (await api.get(f"/transactions/{tx}", headers=p_auth)).json()
        return found if found["status"] != "PROCESSING" else None

    found = await eventually(authorized_now, timeout=60)
    assert found["status"] == "AUTHORIZED", found
    assert await balances(api, p_auth, p_wallet["id"]) == ("50.00", "30.00", "20.00")
    events = await kafka_events(stack, "transaction.authorized", tx, 1)
    assert len({e["event_id"] for e in events}) == len(events) == 1
    resp = await step(api, m_auth, tx, "capture")
    assert resp.status_code == 200 and resp.json()["status"] == "COMPLETED", resp.text
    assert await balances(api, p_auth, p_wallet["id"]) == ("20.00", "0.00", "20.00")
    await held_matches_open_holds(stack)


@pytest.mark.parametrize("end", ["capture", "void", "expire"])
async def test_transactions_killed_after_wallets_ended_a_hold_ends_it_once_by_recovery(
    api: httpx.AsyncClient, stack: Stack, end: str
) -> None:
    # The crash window of each end of an authorization: wallets captured (or released)
    # the hold, and the transactions process dies (SIGKILL) before the end is recorded.
    ttl = {"authorization_ttl_seconds": 2} if end == "expire" else {}
    p_wallet, p_auth, m_wallet, m_auth, auth_tx = await authorized(api, "10.00", **ttl)
    tx = auth_tx["id"]
    await arm_fault(stack, m_wallet["id"], "pause_mid_saga", seconds=60)
    request = None
    if end != "expire":
        who = m_auth if end == "capture" else p_auth
        request = asyncio.create_task(step(api, who, tx, end))
    wallets_did = "captured" if end == "capture" else "released"

    async def hold_ended() -> bool:
        rows = await db_fetch(
            stack, "SELECT status FROM wallets.holds WHERE transaction_id = $1", uid(tx)
        )
        return bool(rows) and rows[0]["status"] == wallets_did

    await eventually(hold_ended, timeout=30)
    stack.kill("transactions")
    if request is not None:
        assert (await request).status_code in (502, 503)  # no answer: the outcome unknown
    stack.start("transactions")
    final = await ended_once(api, stack, end, tx, p_wallet, p_auth, m_wallet, m_auth)
    if end == "expire":
        assert final["failure_code"] == "AUTHORIZATION_EXPIRED"


@pytest.mark.parametrize("end", ["capture", "void", "expire"])
async def test_wallets_killed_while_it_ends_a_hold_the_end_happens_once(
    api: httpx.AsyncClient, stack: Stack, end: str
) -> None:
    # The other side of the crash window: wallets is frozen (SIGSTOP) while the step
    # reaches it, then SIGKILLed and started again. Whether it had done the step or not,
    # the saga (or recovery) asks again, and wallets answers once per transaction.
    ttl = {"authorization_ttl_seconds": 2} if end == "expire" else {}
    p_wallet, p_auth, m_wallet, m_auth, auth_tx = await authorized(api, "10.00", **ttl)
    tx = auth_tx["id"]
    os.kill(stack.procs["wallets"].pid, signal.SIGSTOP)
    try:
        request = None
        if end == "expire":
            await asyncio.sleep(3)  # the authorization expires while wallets is frozen
        else:
            who = m_auth if end == "capture" else p_auth
            request = asyncio.create_task(step(api, who, tx, end))
            await asyncio.sleep(1)
    finally:
        stack.kill("wallets")
    stack.start("wallets")
    if request is not None:
        assert (await request).status_code in (200, 502, 503)
    await ended_once(api, stack, end, tx, p_wallet, p_auth, m_wallet, m_auth)


async def test_a_replayed_hold_or_capture_leaves_no_stale_balance_cached(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # A first call to wallets that committed and died before its write to the cache
    # leaves the wallets' states from before it in Redis. Its retry (the recovery
    # worker's, or the group's) is a replay at wallets: afterwards, the balances shown
    # must be the books', not those stale states. Holds, captures (alone and in
    # batches) and a release.
    p_wallet, p_auth, m_wallet, m_auth, auth_tx = await authorized(api, "10.00", "50.00")
    payer, merchant, tx = p_wallet["id"], m_wallet["id"], auth_tx["id"]
    redis = aioredis.from_url(stack.infra.redis_url)

    async def stale(wallet_id: str, **fields: int) -> None:
        # the cached state as it was before the call: older version, older amounts
        await wallet(api, m_auth if wallet_id == merchant else p_auth, wallet_id)  # cached
        state = orjson.loads(await redis.get(f"wallet:{wallet_id}"))
        state.update(fields, version=state["version"] - 1)
        await redis.set(f"wallet:{wallet_id}", orjson.dumps(state), ex=300)

    hold = {
        "transaction_id": tx,
        "source_wallet_id": payer,
        "destination_wallet_id": merchant,
        "amount_minor": 1000,
        "currency": "USD",
    }
    async with internal_client(stack) as wallets:
        try:
            await stale(payer, held_balance=0)
            for path, body in (
                ("/internal/holds/batch", {"items": [hold]}),
                ("/internal/holds", hold),
            ):
                resp = await wallets.post(path, json=body)
                assert resp.status_code == 200, resp.text
                assert await balances(api, p_auth, payer) == ("50.00", "10.00", "40.00"), path
                await stale(payer, held_balance=0)
            captured = await step(api, m_auth, tx, "capture")
            assert captured.status_code == 200, captured.text
            captures = {"items": [{"transaction_id": tx, "amount_minor": 1000}]}
            for path, body in (
                ("/internal/holds/captures", captures),
                (f"/internal/holds/{tx}/capture", {"amount_minor": 1000}),
            ):
                await stale(payer, balance=5000, held_balance=1000)
                await stale(merchant, balance=0)
                resp = await wallets.post(path, json=body)
                assert resp.status_code == 200, resp.text
                assert await balances(api, p_auth, payer) == ("40.00", "0.00", "40.00"), path
                assert await balances(api, m_auth, merchant) == ("10.00", "0.00", "10.00"), path
            # and a void's release
            second = await move(api, p_auth, "payment", payer, merchant, "5.00", capture="manual")
            voided = await step(api, p_auth, second.json()["id"], "void")
            assert voided.status_code == 200, voided.text
            await stale(payer, held_balance=500)
            resp = await wallets.post(f"/internal/holds/{second.json()['id']}/release")
            assert resp.status_code == 200, resp.text
            assert await balances(api, p_auth, payer) == ("40.00", "0.00", "40.00")
        finally:
            await redis.aclose()


@pytest.mark.parametrize("keyed", [True, False])
async def test_an_authorization_that_expires_before_its_answer_is_answered_as_authorized(
    api: httpx.AsyncClient, stack: Stack, keyed: bool
) -> None:
    # Its group waits on wallets beyond the lease (here: after the hold), the recovery
    # worker takes the authorization over, records it AUTHORIZED (and the key's answer
    # with it), then finds it past its expiry and voids it. The request's answer is the
    # create's outcome, an authorization (201), never a refusal: with a key, exactly the
    # answer its replays give (it answered 400 AUTHORIZATION_EXPIRED, and the replay 201
    # AUTHORIZED; found in `make chaos`, a pause of wallets longer than an
    # authorization's life); without one, the transaction as it stands, VOIDED.
    _, p_auth, p_wallet = await funded_user(api, "50.00")
    _, _, m_wallet = await funded_user(api, "0", account_type="merchant")
    await arm_fault(stack, m_wallet["id"], "pause_mid_saga", seconds=LEASE_SECONDS + 8)
    body = {
        "type": "payment",
        "source_wallet_id": p_wallet["id"],
        "destination_wallet_id": m_wallet["id"],
        "amount": "30.00",
        "capture": "manual",
        "authorization_ttl_seconds": 1,
    }
    headers = {**p_auth, **({"Idempotency-Key": f"short-{uuid.uuid4().hex}"} if keyed else {})}
    resp = await api.post("/transactions/create", json=body, headers=headers, timeout=60)
    assert resp.status_code == 201, resp.text
    answered = resp.json()
    now = (await api.get(f"/transactions/{answered['id']}", headers=p_auth)).json()
    assert (now["status"], now["failure_code"]) == ("VOIDED", "AUTHORIZATION_EXPIRED")
    if keyed:
        assert answered["status"] == "AUTHORIZED"
        again = await api.post("/transactions/create", json=body, headers=headers)
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert (again.status_code, again.json()) == (201, answered)
    else:
        assert answered == now
    assert await balances(api, p_auth, p_wallet["id"]) == ("50.00", "0.00", "50.00")
    events = await kafka_events(stack, "transaction.voided", answered["id"], 1)
    assert len({e["event_id"] for e in events}) == len(events) == 1
    await held_matches_open_holds(stack)


async def test_a_capture_the_recovery_worker_ended_answers_what_its_replays_answer(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # Its group waits on wallets beyond the lease (after the money was taken): the
    # recovery worker takes the capture over and records it COMPLETED. The request's
    # answer is its key's for ever: a refund between it and a replay does not make the
    # replay answer otherwise (it answered from the transaction as it stood then, and a
    # later replay made the key's answer from the refunded one).
    _, _, m_wallet, m_auth, auth_tx = await authorized(api, "30.00")
    await arm_fault(stack, m_wallet["id"], "pause_mid_saga", seconds=LEASE_SECONDS + 8)
    key = f"late-capture-{uuid.uuid4().hex}"
    tried = await attempts(stack, auth_tx["id"])
    first = await step(api, m_auth, auth_tx["id"], "capture", key, amount="20.00")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "COMPLETED"
    assert first.json()["refunded_amount"] == "0.00"
    assert await attempts(stack, auth_tx["id"]) > tried  # the recovery worker's claim
    refunded = await step(api, m_auth, auth_tx["id"], "refund", amount="5.00")
    assert refunded.status_code == 201, refunded.text
    again = await step(api, m_auth, auth_tx["id"], "capture", key, amount="20.00")
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert (again.status_code, again.json()) == (200, first.json())
