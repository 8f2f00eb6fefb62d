"""Wallets: ownership, the ledger, idempotent and concurrent balance changes, the cache."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import asyncpg
import httpx
import pytest
import redis

from tests.conftest import Stack, stack_cmd
from tests.e2e.helpers import (
    assert_problem,
    bearer,
    internal_client,
    kafka_events,
    login,
    move_out,
    register,
    user_with_token,
)


async def new_wallet(api: httpx.AsyncClient, auth: dict[str, str], currency: str = "USD") -> dict:  # type: ignore[type-arg]
    resp = await api.post("/wallets/create", json={"currency": currency}, headers=auth)
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


async def fund(stack: Stack, wallet_id: str, amount: str) -> dict:  # type: ignore[type-arg]
    async with internal_client(stack) as c:
        resp = await c.post(
            f"/wallets/{wallet_id}/add-funds",
            json={"amount": amount, "transaction_id": str(uuid.uuid4())},
        )
        assert resp.status_code == 200, resp.text
        return resp.json()  # type: ignore[no-any-return]


async def ledger(stack: Stack, wallet_id: str) -> tuple[int, int, int]:
    """(balance, sum of entries, number of entries) straight from PostgreSQL."""
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        balance = await conn.fetchval(
            "SELECT balance FROM wallets.wallets WHERE id = $1", uuid.UUID(wallet_id)
        )
        total, count = await conn.fetchrow(
            "SELECT coalesce(sum(amount), 0), count(*) FROM wallets.ledger_entries "
            "WHERE wallet_id = $1",
            uuid.UUID(wallet_id),
        )
        return int(balance), int(total), int(count)
    finally:
        await conn.close()


async def test_create_list_get_and_one_wallet_per_currency(api: httpx.AsyncClient) -> None:
    user, auth = await user_with_token(api)
    usd = await new_wallet(api, auth)
    assert usd["balance"] == usd["held_balance"] == usd["available_balance"] == "0.00"
    assert usd["status"] == "ACTIVE"
    assert usd["currency"] == "USD"
    assert usd["user_id"] == user["id"]
    assert set(usd) == {
        "id",
        "user_id",
        "currency",
        "balance",
        "held_balance",
        "available_balance",
        "status",
        "created_at",
        "updated_at",
    }
    again = await api.post("/wallets/create", json={"currency": "USD"}, headers=auth)
    assert_problem(again, 409, "WALLET_EXISTS")
    jpy = await new_wallet(api, auth, "JPY")
    assert jpy["balance"] == "0"
    listed = (await api.get("/wallets", headers=auth)).json()
    assert {w["id"] for w in listed["items"]} == {usd["id"], jpy["id"]}
    assert listed["next_cursor"] is None
    got = await api.get(f"/wallets/{usd['id']}", headers=auth)
    assert got.json() == usd
    bad = await api.post("/wallets/create", json={"currency": "XXX"}, headers=auth)
    assert_problem(bad, 422, "VALIDATION_ERROR")


async def test_someone_elses_wallet_is_not_found(api: httpx.AsyncClient) -> None:
    _, owner = await user_with_token(api)
    _, other = await user_with_token(api)
    wallet = await new_wallet(api, owner)
    for method, path in [
        ("GET", f"/wallets/{wallet['id']}"),
        ("POST", f"/wallets/{wallet['id']}/deactivate"),
        ("POST", f"/wallets/{wallet['id']}/activate"),
        ("GET", f"/wallets/{uuid.uuid4()}"),
        ("GET", "/wallets/not-a-uuid"),
    ]:
        assert_problem(await api.request(method, path, headers=other), 404, "WALLET_NOT_FOUND")
    assert (await api.get(f"/wallets/{wallet['id']}", headers=owner)).json()["status"] == "ACTIVE"


async def test_deactivate_and_activate(api: httpx.AsyncClient, stack: Stack) -> None:
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    _, other = await user_with_token(api)
    sink = await new_wallet(api, other)
    await fund(stack, wallet["id"], "5.00")
    off = await api.post(f"/wallets/{wallet['id']}/deactivate", headers=auth)
    assert off.json()["status"] == "INACTIVE"
    async with internal_client(stack) as c:
        resp = await c.post(
            f"/wallets/{wallet['id']}/add-funds",
            json={"amount": "1.00", "transaction_id": str(uuid.uuid4())},
        )
        assert_problem(resp, 400, "WALLET_INACTIVE")
        assert_problem(await move_out(c, wallet["id"], sink["id"], 100), 400, "WALLET_INACTIVE")
        # the saga's compensation still gets money back into a deactivated wallet
        refund = await c.post(
            f"/wallets/{wallet['id']}/add-funds",
            json={"amount": "2.00", "transaction_id": str(uuid.uuid4()), "operation": "refund"},
        )
        assert refund.status_code == 200, refund.text
    on = await api.post(f"/wallets/{wallet['id']}/activate", headers=auth)
    assert on.json()["status"] == "ACTIVE"
    assert on.json()["balance"] == "7.00"


async def test_200_concurrent_debits_never_overdraw(api: httpx.AsyncClient, stack: Stack) -> None:
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    _, other = await user_with_token(api)
    sink = await new_wallet(api, other)
    await fund(stack, wallet["id"], "50.00")
    async with internal_client(stack) as c:

        async def deduct() -> httpx.Response:
            return await move_out(c, wallet["id"], sink["id"], 100)

        results = await asyncio.gather(*(deduct() for _ in range(200)))
    codes = [r.status_code for r in results]
    assert codes.count(200) == 50
    assert codes.count(400) == 150
    assert all(r.json()["code"] == "INSUFFICIENT_FUNDS" for r in results if r.status_code == 400)
    assert (await api.get(f"/wallets/{wallet['id']}", headers=auth)).json()["balance"] == "0.00"
    balance, total, count = await ledger(stack, wallet["id"])
    assert (balance, total, count) == (0, 0, 51)  # one credit, fifty debits
    events = await kafka_events(stack, "wallet.funds_deducted", wallet["id"], 50)
    assert len(events) == 50
    assert len({e["event_id"] for e in events}) == 50


async def test_same_transaction_and_operation_moves_money_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    txid = str(uuid.uuid4())
    body = {"amount": "7.25", "transaction_id": txid}
    async with internal_client(stack) as c:
        sequential = [
            (await c.post(f"/wallets/{wallet['id']}/add-funds", json=body)) for _ in range(5)
        ]
        concurrent = await asyncio.gather(
            *(c.post(f"/wallets/{wallet['id']}/add-funds", json=body) for _ in range(5))
        )
    answers = [r.json() for r in [*sequential, *concurrent]]
    assert all(r.status_code == 200 for r in [*sequential, *concurrent])
    assert all(a == answers[0] for a in answers)
    assert answers[0]["balance"] == "7.25"
    assert await ledger(stack, wallet["id"]) == (725, 725, 1)
    events = await kafka_events(stack, "wallet.funds_added", wallet["id"], 1)
    assert len(events) == 1
    assert events[0]["data"]["transaction_id"] == txid


async def test_internal_endpoints_refuse_callers_without_the_service_credential(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    body = {"amount": "1000.00", "transaction_id": str(uuid.uuid4())}
    async with httpx.AsyncClient(base_url=stack.url("wallets")) as raw:
        url = f"/wallets/{wallet['id']}/add-funds"
        assert_problem(await raw.post(url, json=body), 401, "UNAUTHORIZED")
        assert_problem(await raw.post(url, json=body, headers=auth), 401, "UNAUTHORIZED")
        wrong = {"X-Internal-Token": "guessed"}
        assert_problem(await raw.post(url, json=body, headers=wrong), 403, "FORBIDDEN")
    assert (await ledger(stack, wallet["id"]))[2] == 0


async def test_bad_amounts_are_refused_and_move_nothing(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    async with internal_client(stack) as c:
        for amount in ["0", "-5", "1e3", "0.001", "NaN", 5, "abc"]:
            resp = await c.post(
                f"/wallets/{wallet['id']}/add-funds",
                json={"amount": amount, "transaction_id": str(uuid.uuid4())},
            )
            assert_problem(resp, 422, "VALIDATION_ERROR")
    assert await ledger(stack, wallet["id"]) == (0, 0, 0)


async def test_balance_read_after_a_change_is_fresh(api: httpx.AsyncClient, stack: Stack) -> None:
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    for i in range(1, 6):
        assert (await api.get(f"/wallets/{wallet['id']}", headers=auth)).status_code == 200
        await fund(stack, wallet["id"], "1.00")
        got = (await api.get(f"/wallets/{wallet['id']}", headers=auth)).json()
        assert got["balance"] == f"{i}.00"


@pytest.mark.disruptive
async def test_wallets_keep_working_uncached_while_redis_is_down(stack: Stack) -> None:
    # The gateway needs Redis for sessions, so this talks to the wallets service the way
    # the gateway does (internal credential + user id).
    user_id = str(uuid.uuid4())
    async with internal_client(stack) as c:
        c.headers["X-User-Id"] = str(uuid.uuid4())
        sink = (await c.post("/wallets/create", json={"currency": "EUR"})).json()
        c.headers["X-User-Id"] = user_id
        wallet = (await c.post("/wallets/create", json={"currency": "EUR"})).json()
        # Cached at 0.00; Redis keeps it across its restart (AOF), so the changes made
        # while it is down must not be hidden behind it afterwards.
        assert (await c.get(f"/wallets/{wallet['id']}")).json()["balance"] == "0.00"
        stack_cmd("down", "redis")
        try:
            await fund(stack, wallet["id"], "3.00")
            got = await c.get(f"/wallets/{wallet['id']}")
            assert got.status_code == 200
            assert got.json()["balance"] == "3.00"
            deducted = await move_out(c, wallet["id"], sink["id"], 100, currency="EUR")
            assert deducted.status_code == 200, deducted.text
            assert (await c.get(f"/wallets/{wallet['id']}")).json()["balance"] == "2.00"
        finally:
            stack_cmd("up", "redis")
        cached = redis.Redis.from_url(stack.infra.redis_url)
        key = f"wallet:{wallet['id']}"
        try:
            # What makes this a test: Redis came back with the old state (AOF).
            stale = cached.get(key)
            assert stale is not None and json.loads(stale)["balance"] == 0
            # Every read says 2.00, until the service has reached Redis again (its pooled
            # connections are checked every 10 s), dropped the stale key and cached the
            # wallet anew: then the reads come from the cache, and still say 2.00.
            deadline = time.monotonic() + 60
            while True:
                got = await c.get(f"/wallets/{wallet['id']}")
                assert got.json()["balance"] == "2.00"
                now = cached.get(key)
                if now is not None and json.loads(now)["balance"] == 200:
                    break
                assert time.monotonic() < deadline, "the service never reached Redis again"
                await asyncio.sleep(0.5)
            assert (await c.get(f"/wallets/{wallet['id']}")).json()["balance"] == "2.00"
        finally:
            cached.close()


async def test_a_retry_racing_its_twin_gets_the_twins_result_not_a_refusal(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # The balance covers one debit: a retry that waited for its in-flight twin must see
    # the twin's success, not "insufficient funds" (the saga would then think the money
    # never left).
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    _, other = await user_with_token(api)
    sink = await new_wallet(api, other)
    await fund(stack, wallet["id"], "1.00")
    tx = str(uuid.uuid4())
    async with internal_client(stack) as c:
        results = await asyncio.gather(
            *(move_out(c, wallet["id"], sink["id"], 100, tx) for _ in range(10))
        )
    assert [r.status_code for r in results] == [200] * 10
    assert len({r.text for r in results}) == 1
    assert await ledger(stack, wallet["id"]) == (0, 0, 2)


async def test_a_fenced_credit_never_happens_and_a_done_credit_cannot_be_fenced(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    fenced_tx, credited_tx = str(uuid.uuid4()), str(uuid.uuid4())
    async with internal_client(stack) as c:
        fence = await c.post("/internal/wallets/credit-fence", json={"transaction_id": fenced_tx})
        assert fence.json() == {"credited": False}
        refused = await c.post(
            f"/wallets/{wallet['id']}/add-funds",
            json={"amount": "5.00", "transaction_id": fenced_tx},
        )
        assert_problem(refused, 400, "CREDIT_FENCED")
        ok = await c.post(
            f"/wallets/{wallet['id']}/add-funds",
            json={"amount": "5.00", "transaction_id": credited_tx},
        )
        assert ok.status_code == 200
        late = await c.post("/internal/wallets/credit-fence", json={"transaction_id": credited_tx})
        assert late.json() == {"credited": True}
    assert await ledger(stack, wallet["id"]) == (500, 500, 1)


async def test_internal_wallet_paths_are_not_routable_through_the_gateway(
    api: httpx.AsyncClient,
) -> None:
    _, auth = await user_with_token(api)
    wallet = await new_wallet(api, auth)
    for method, path in [
        ("POST", "/internal/wallets/credit-fence"),
        ("GET", f"/internal/wallets/{wallet['id']}"),
        ("GET", f"/wallets/{wallet['id']}/internal"),
    ]:
        resp = await api.request(
            method, path, json={"transaction_id": str(uuid.uuid4())}, headers=auth
        )
        assert_problem(resp, 404, "NOT_FOUND")


async def test_anyone_signed_in_sees_who_a_wallet_pays_and_nothing_more(
    api: httpx.AsyncClient,
) -> None:
    # Confirmation of payee (issue 22): a person's first name and last initial, a
    # merchant's full name; the currency and account type; no id, no email.
    person = await register(api, full_name="Grace Brewster Hopper")
    p_auth = bearer((await login(api, person["email"]))["access_token"])
    p_wallet = await new_wallet(api, p_auth)
    shop = await register(api, full_name="Corner Shop Ltd", account_type="merchant")
    s_auth = bearer((await login(api, shop["email"]))["access_token"])
    s_wallet = await new_wallet(api, s_auth, "EUR")
    _, someone = await user_with_token(api)
    seen = (await api.get(f"/wallets/{p_wallet['id']}/payee", headers=someone)).json()
    assert seen == {
        "wallet_id": p_wallet["id"],
        "currency": "USD",
        "name": "Grace H.",
        "account_type": "personal",
    }
    merchant = (await api.get(f"/wallets/{s_wallet['id']}/payee", headers=someone)).json()
    assert (merchant["name"], merchant["currency"]) == ("Corner Shop Ltd", "EUR")
    for unknown in (str(uuid.uuid4()), "not-an-id"):
        missing = await api.get(f"/wallets/{unknown}/payee", headers=someone)
        assert_problem(missing, 404, "WALLET_NOT_FOUND")
    assert (await api.get(f"/wallets/{p_wallet['id']}/payee")).status_code == 401
