"""Idempotency-Key: one effect per key, replays, reuse with another body, in flight."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.conftest import Stack
from tests.e2e.helpers import assert_problem
from tests.e2e.money import balance, db_fetch, funded_user, move, uid


async def test_same_key_20_times_concurrently_moves_money_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, a_auth, a_wallet = await funded_user(api, "100.00")
    _, b_auth, b_wallet = await funded_user(api, "0")
    key = f"key-{uuid.uuid4()}"
    headers = {**a_auth, "Idempotency-Key": key}
    results = await asyncio.gather(
        *(
            move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "12.00")
            for _ in range(20)
        )
    )
    codes = [r.status_code for r in results]
    assert set(codes) <= {201, 409}, codes
    assert codes.count(201) >= 1
    firsts = [r for r in results if r.status_code == 201]
    assert len({r.json()["id"] for r in firsts}) == 1
    for r in results:
        if r.status_code == 409:
            assert r.json()["code"] == "REQUEST_IN_PROGRESS"
    assert await balance(api, a_auth, a_wallet["id"]) == "88.00"
    assert await balance(api, b_auth, b_wallet["id"]) == "12.00"
    rows = await db_fetch(
        stack,
        "SELECT id FROM transactions.transactions WHERE source_wallet_id = $1",
        uid(a_wallet["id"]),
    )
    assert len(rows) == 1
    # after the fact every retry is a replay of the first answer
    replay = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "12.00")
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == firsts[0].json()
    assert await balance(api, a_auth, a_wallet["id"]) == "88.00"


async def test_same_key_with_another_body_is_422(api: httpx.AsyncClient) -> None:
    _, a_auth, a_wallet = await funded_user(api, "50.00")
    _, _, b_wallet = await funded_user(api, "0")
    headers = {**a_auth, "Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "5.00")
    assert first.status_code == 201
    other = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "6.00")
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert await balance(api, a_auth, a_wallet["id"]) == "45.00"


async def test_a_failed_transaction_is_replayed_as_the_same_failure(
    api: httpx.AsyncClient,
) -> None:
    _, a_auth, a_wallet = await funded_user(api, "5.00")
    _, _, b_wallet = await funded_user(api, "0")
    headers = {**a_auth, "Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "9.00")
    body = assert_problem(first, 400, "INSUFFICIENT_FUNDS")
    again = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "9.00")
    assert again.status_code == 400
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == body


async def test_keys_are_scoped_per_user(api: httpx.AsyncClient) -> None:
    key = f"shared-{uuid.uuid4()}"
    _, a_auth, a_wallet = await funded_user(api, "10.00")
    _, b_auth, b_wallet = await funded_user(api, "10.00")
    r1 = await move(
        api, {**a_auth, "Idempotency-Key": key}, "transfer", a_wallet["id"], b_wallet["id"], "1.00"
    )
    r2 = await move(
        api, {**b_auth, "Idempotency-Key": key}, "transfer", b_wallet["id"], a_wallet["id"], "2.00"
    )
    assert r1.status_code == r2.status_code == 201
    assert r1.json()["id"] != r2.json()["id"]


async def test_bad_idempotency_key_is_422(api: httpx.AsyncClient) -> None:
    _, a_auth, a_wallet = await funded_user(api, "10.00")
    _, _, b_wallet = await funded_user(api, "0")
    resp = await move(
        api,
        {**a_auth, "Idempotency-Key": "k" * 256},
        "transfer",
        a_wallet["id"],
        b_wallet["id"],
        "1.00",
    )
    assert_problem(resp, 422, "VALIDATION_ERROR")


async def test_a_reused_key_is_422_even_when_the_other_body_is_invalid(
    api: httpx.AsyncClient,
) -> None:
    """The key is read only after validation; a body that fails it still answers as a
    reuse of the key, not as its own error."""
    _, a_auth, a_wallet = await funded_user(api, "50.00")
    _, _, b_wallet = await funded_user(api, "0")
    headers = {**a_auth, "Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "5.00")
    assert first.status_code == 201
    other = await move(api, headers, "transfer", a_wallet["id"], str(uuid.uuid4()), "5.00")
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert await balance(api, a_auth, a_wallet["id"]) == "45.00"


async def test_an_expired_key_starts_a_new_transaction(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, a_auth, a_wallet = await funded_user(api, "50.00")
    _, _, b_wallet = await funded_user(api, "0")
    key = f"key-{uuid.uuid4()}"
    headers = {**a_auth, "Idempotency-Key": key}
    first = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "5.00")
    assert first.status_code == 201
    await db_fetch(
        stack,
        "UPDATE transactions.idempotency_keys SET expires_at = now() - interval '1 second' "
        "WHERE key = $1 RETURNING key",
        key,
    )
    again = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "7.00")
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert await balance(api, a_auth, a_wallet["id"]) == "38.00"


async def test_a_replay_is_answered_while_wallets_is_down(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, a_auth, a_wallet = await funded_user(api, "50.00")
    _, _, b_wallet = await funded_user(api, "0")
    headers = {**a_auth, "Idempotency-Key": f"key-{uuid.uuid4()}"}
    first = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "5.00")
    assert first.status_code == 201
    stack.stop("wallets")
    try:
        replay = await move(api, headers, "transfer", a_wallet["id"], b_wallet["id"], "5.00")
        assert replay.status_code == 201, replay.text
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == first.json()
    finally:
        stack.start("wallets")
    assert await balance(api, a_auth, a_wallet["id"]) == "45.00"
