"""Crash recovery and conservation of money under concurrency."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from decimal import Decimal

import httpx
import pytest

from paysys.kit.mongo import make_mongo
from paysys_dev.stack import ROOT
from tests.conftest import LEASE_SECONDS, Stack, eventually
from tests.e2e.helpers import kafka_events, user_with_token
from tests.e2e.money import (
    arm_fault,
    balance,
    db_fetch,
    deposit,
    funded_user,
    move,
    uid,
    wallet_for,
)


@pytest.mark.parametrize("destination", ["active", "deactivated while down"])
async def test_transactions_killed_after_the_money_moved_completes_by_recovery_once(
    api: httpx.AsyncClient, stack: Stack, destination: str
) -> None:
    _, a_auth, a_wallet = await funded_user(api, "50.00")
    _, b_auth, b_wallet = await funded_user(api, "0")
    await arm_fault(stack, b_wallet["id"], "pause_mid_saga", seconds=60)
    request = asyncio.create_task(
        move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "20.00")
    )

    async def moved() -> bool:
        return await balance(api, b_auth, b_wallet["id"]) == "20.00"

    await eventually(moved, timeout=30)
    stack.kill("transactions")  # SIGKILL: wallets committed the move, COMPLETED is not
    killed_at = time.monotonic()
    response = await request
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    if destination != "active":
        await api.post(f"/wallets/{b_wallet['id']}/deactivate", headers=b_auth)
    stack.start("transactions")
    [row] = await db_fetch(
        stack,
        "SELECT id FROM transactions.transactions WHERE source_wallet_id = $1",
        uid(a_wallet["id"]),
    )
    tx_id = str(row["id"])

    async def terminal() -> dict | None:  # type: ignore[type-arg]
        tx = (await api.get(f"/transactions/{tx_id}", headers=a_auth)).json()
        return tx if tx["status"] in ("COMPLETED", "FAILED") else None

    tx = await eventually(terminal, timeout=60)
    assert time.monotonic() - killed_at < 60 + 30  # recovery window, plus the restart
    a = Decimal(await balance(api, a_auth, a_wallet["id"]))
    if destination != "active":
        await api.post(f"/wallets/{b_wallet['id']}/activate", headers=b_auth)
    b = Decimal(await balance(api, b_auth, b_wallet["id"]))
    # The move happened before the crash: that first outcome stands, whatever the
    # destination's status since.
    assert (tx["status"], a, b) == ("COMPLETED", Decimal("30.00"), Decimal("20.00"))
    completed = await kafka_events(stack, "transaction.completed", tx_id, 1)
    assert len({e["event_id"] for e in completed}) == len(completed) == 1
    failed = await kafka_events(stack, "transaction.failed", tx_id, 0, linger=2)
    assert failed == []


async def test_a_deposit_killed_between_its_charge_and_its_credit_completes_once(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    # Issue 20.8: the crash window of a deposit: the card is charged, the wallet not
    # yet credited, and the saga's process dies (SIGKILL). Recovery credits it once;
    # the card is charged once.
    _, auth = await user_with_token(api)
    wallet = await wallet_for(api, auth)
    await arm_fault(stack, wallet["id"], "pause_mid_saga", seconds=60)
    request = asyncio.create_task(deposit(api, auth, wallet["id"], "7.25"))

    async def charged() -> list:  # type: ignore[type-arg]
        return await db_fetch(
            stack,
            "SELECT p.transaction_id FROM payment_gateway.payments p"
            " JOIN transactions.transactions t ON t.id = p.transaction_id"
            " WHERE t.destination_wallet_id = $1 AND p.status = 'succeeded'",
            uid(wallet["id"]),
        )

    [row] = await eventually(charged, timeout=30)
    tx_id = str(row["transaction_id"])
    assert await balance(api, auth, wallet["id"]) == "0.00"  # charged, not credited
    stack.kill("transactions")
    response = await request
    assert response.status_code == 503
    stack.start("transactions")

    async def terminal() -> dict | None:  # type: ignore[type-arg]
        tx = (await api.get(f"/transactions/{tx_id}", headers=auth)).json()
        return tx if tx["status"] in ("COMPLETED", "FAILED") else None

    tx = await eventually(terminal, timeout=90)
    assert tx["status"] == "COMPLETED"
    assert await balance(api, auth, wallet["id"]) == "7.25"
    payments = await db_fetch(
        stack,
        "SELECT status FROM payment_gateway.payments WHERE transaction_id = $1",
        uid(tx_id),
    )
    assert [p["status"] for p in payments] == ["succeeded"]
    legs = await db_fetch(
        stack,
        "SELECT operation, amount FROM wallets.ledger_entries WHERE transaction_id = $1",
        uid(tx_id),
    )
    assert [(r["operation"], r["amount"]) for r in legs] == [("credit", 725)]


async def test_random_concurrent_transfers_and_payments_conserve_money(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    rng = random.Random(20261126)
    people = [await funded_user(api, f"{rng.randint(20, 200)}.00") for _ in range(8)]
    merchants = [await funded_user(api, "0", account_type="merchant") for _ in range(2)]
    everyone = people + merchants
    deposited = sum([Decimal(await balance(api, auth, w["id"])) for _, auth, w in everyone])
    # one inactive wallet among the people, so some transfers must fail on it
    _, idle_auth, idle_wallet = people[-1]
    await api.post(f"/wallets/{idle_wallet['id']}/deactivate", headers=idle_auth)

    async def one(i: int) -> httpx.Response:
        _, auth, src = rng.choice(people)
        kind = rng.choice(["transfer", "transfer", "payment"])
        pool = merchants if kind == "payment" and rng.random() < 0.8 else everyone
        _, _, dst = rng.choice(pool)
        amount = f"{rng.randint(1, 6000) / 100:.2f}"
        return await move(api, auth, kind, src["id"], dst["id"], amount)

    sem = asyncio.Semaphore(16)

    async def bounded(i: int) -> httpx.Response:
        async with sem:
            return await one(i)

    results = await asyncio.gather(*(bounded(i) for i in range(160)))
    codes = {r.status_code for r in results}
    assert codes <= {201, 400}, [r.text for r in results if r.status_code not in (201, 400)]
    assert any(r.status_code == 201 for r in results)
    assert any(r.status_code == 400 for r in results)

    wallet_ids = [uid(w["id"]) for _, _, w in everyone]
    rows = await db_fetch(
        stack,
        "SELECT w.id, w.balance, coalesce(sum(e.amount), 0) AS total "
        "FROM wallets.wallets w LEFT JOIN wallets.ledger_entries e ON e.wallet_id = w.id "
        "WHERE w.id = ANY($1) GROUP BY w.id, w.balance",
        wallet_ids,
    )
    assert len(rows) == len(everyone)
    for row in rows:
        assert row["balance"] == row["total"] >= 0
    assert Decimal(sum(r["balance"] for r in rows)) / 100 == deposited

    txs = await db_fetch(
        stack,
        "SELECT id::text, status FROM transactions.transactions WHERE source_wallet_id = ANY($1)",
        wallet_ids,
    )
    assert len(txs) == 160
    assert {t["status"] for t in txs} <= {"COMPLETED", "FAILED"}
    ids = {t["id"] for t in txs}
    client, db = make_mongo(stack.infra.mongodb_url, stack.infra.db_name)
    try:

        async def all_logged() -> bool:
            n = await db.transaction_logs.count_documents({"transaction_id": {"$in": list(ids)}})
            return n == len(ids)

        await eventually(all_logged, timeout=60)
    finally:
        await client.close()
    completed = await kafka_events(
        stack,
        "transaction.completed",
        None,
        0,
        linger=3,
        where=lambda e: e["data"]["transaction_id"] in ids,
    )
    failed = await kafka_events(
        stack,
        "transaction.failed",
        None,
        0,
        linger=3,
        where=lambda e: e["data"]["transaction_id"] in ids,
    )
    seen = [e["data"]["transaction_id"] for e in completed + failed]
    assert sorted(seen) == sorted(ids)  # exactly one terminal event per transaction
    by_status = {t["id"]: t["status"] for t in txs}
    assert all(by_status[e["data"]["transaction_id"]] == "COMPLETED" for e in completed)


async def test_a_thousand_concurrent_transfers_among_twenty_hot_wallets_conserve_money(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    rng = random.Random(1000)
    people = [await funded_user(api, "50.00") for _ in range(20)]
    deadlocks_before = await _deadlocks(stack)

    async def one() -> httpx.Response:
        (_, auth, src), (_, _, dst) = rng.sample(people, 2)
        amount = f"{rng.randint(1, 1500) / 100:.2f}"
        return await move(api, auth, "transfer", src["id"], dst["id"], amount)

    sem = asyncio.Semaphore(64)

    async def bounded() -> httpx.Response:
        async with sem:
            return await one()

    results = await asyncio.gather(*(bounded() for _ in range(1000)))
    codes = [r.status_code for r in results]
    assert set(codes) <= {201, 400}, [r.text for r in results if r.status_code not in (201, 400)]
    assert {r.json()["code"] for r in results if r.status_code == 400} <= {"INSUFFICIENT_FUNDS"}
    assert codes.count(201) > 500
    wallet_ids = [uid(w["id"]) for _, _, w in people]
    rows = await db_fetch(
        stack,
        "SELECT w.id, w.balance, coalesce(sum(e.amount), 0) AS total "
        "FROM wallets.wallets w LEFT JOIN wallets.ledger_entries e ON e.wallet_id = w.id "
        "WHERE w.id = ANY($1) GROUP BY w.id, w.balance",
        wallet_ids,
    )
    for row in rows:
        assert row["balance"] == row["total"] >= 0
    assert sum(r["balance"] for r in rows) == 20 * 5000  # not a cent made or lost
    txs = await db_fetch(
        stack,
        "SELECT status, count(*) AS n FROM transactions.transactions "
        "WHERE source_wallet_id = ANY($1) AND type = 'transfer' GROUP BY status",
        wallet_ids,
    )
    assert {t["status"]: t["n"] for t in txs} == {
        k: v for k, v in {"COMPLETED": codes.count(201), "FAILED": codes.count(400)}.items() if v
    }
    assert await _deadlocks(stack) == deadlocks_before  # locks taken in id order


PG_LOG = ROOT / ".run" / "logs" / "postgres.log"


async def _deadlocks(stack: Stack) -> int:
    """Deadlocks so far. PostgreSQL logs each one as it is detected; its statistics view
    is flushed lazily (an idle backend's counts can lag by 10 s), so the log is read when
    the stack's own PostgreSQL runs, and the view, after that lag, only for an external
    one."""
    if PG_LOG.exists():
        return PG_LOG.read_text(errors="replace").count("ERROR:  deadlock detected")
    await asyncio.sleep(11)
    [row] = await db_fetch(
        stack,
        "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()",
    )
    return int(row["deadlocks"])


async def test_list_filters_and_cursor_pagination(api: httpx.AsyncClient) -> None:
    _, a_auth, a_wallet = await funded_user(api, "100.00")
    _, b_auth, b_wallet = await funded_user(api, "0")
    for i in range(5):
        resp = await move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], f"{i + 1}.00")
        assert resp.status_code == 201
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "type": "transfer", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/transactions", params=params, headers=a_auth)).json()
        seen += [t["amount"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["5.00", "4.00", "3.00", "2.00", "1.00"]  # newest first
    deposits = (await api.get("/transactions", params={"type": "deposit"}, headers=a_auth)).json()
    assert len(deposits["items"]) == 1
    received = (
        await api.get("/transactions", params={"wallet_id": b_wallet["id"]}, headers=b_auth)
    ).json()
    assert len(received["items"]) == 5
    stranger = (await api.get("/transactions", headers=(await funded_user(api, "0"))[1])).json()
    assert stranger["items"] == []
    bad = await api.get("/transactions", params={"limit": 0}, headers=a_auth)
    assert bad.status_code == 422
    assert (await api.get(f"/transactions/{uuid.uuid4()}", headers=a_auth)).status_code == 404


@pytest.mark.parametrize("destination", ["active", "deactivated meanwhile"])
async def test_two_runners_on_one_saga_move_the_money_once(
    api: httpx.AsyncClient, stack: Stack, destination: str
) -> None:
    # The first runner stalls after the move for longer than its lease, so the recovery
    # worker takes the saga over while the first runner is still alive; then both finish
    # it. Whatever the interleaving, the money moves exactly once, with one event.
    _, a_auth, a_wallet = await funded_user(api, "50.00")
    _, b_auth, b_wallet = await funded_user(api, "0")
    await arm_fault(stack, b_wallet["id"], "pause_mid_saga", seconds=LEASE_SECONDS + 8)
    request = asyncio.create_task(
        move(api, a_auth, "transfer", a_wallet["id"], b_wallet["id"], "20.00")
    )

    async def moved() -> bool:
        return await balance(api, a_auth, a_wallet["id"]) == "30.00"

    await eventually(moved, timeout=30)
    if destination != "active":
        await api.post(f"/wallets/{b_wallet['id']}/deactivate", headers=b_auth)
    [row] = await db_fetch(
        stack,
        "SELECT id FROM transactions.transactions WHERE source_wallet_id = $1",
        uid(a_wallet["id"]),
    )
    tx_id = str(row["id"])

    async def terminal() -> dict | None:  # type: ignore[type-arg]
        tx = (await api.get(f"/transactions/{tx_id}", headers=a_auth)).json()
        return tx if tx["status"] in ("COMPLETED", "FAILED") else None

    tx = await eventually(terminal, timeout=40, interval=0.5)  # the worker, not the runner
    # The takeover happened: the recovery worker claimed the saga (a second claim of its
    # lease) while the first runner was still asleep with it.
    [claimed] = await db_fetch(
        stack, "SELECT attempts FROM transactions.transactions WHERE id = $1", uid(tx_id)
    )
    assert claimed["attempts"] >= 2, "no second runner ever took the saga"
    log = (stack.log_dir / "transactions.log").read_text(errors="replace")
    assert any("saga_recovering" in line and tx_id in line for line in log.splitlines())
    assert not request.done(), "the first runner finished before the takeover"
    response = await request  # the first runner wakes up and finds the saga finished
    # Its answer is the saga's final state, as the worker left it.
    assert response.status_code == (201 if tx["status"] == "COMPLETED" else 400), response.text
    assert response.json().get("id", response.json().get("transaction_id")) == tx_id
    a = Decimal(await balance(api, a_auth, a_wallet["id"]))
    if destination != "active":
        await api.post(f"/wallets/{b_wallet['id']}/activate", headers=b_auth)
    b = Decimal(await balance(api, b_auth, b_wallet["id"]))
    assert a + b == Decimal("50.00")
    final = (await api.get(f"/transactions/{tx_id}", headers=a_auth)).json()
    assert final["status"] == tx["status"]
    if tx["status"] == "COMPLETED":
        assert (a, b) == (Decimal("30.00"), Decimal("20.00"))
    else:
        assert (a, b) == (Decimal("50.00"), Decimal("0.00"))
    steps = await db_fetch(
        stack,
        "SELECT operation FROM wallets.ledger_entries WHERE transaction_id = $1",
        uid(tx_id),
    )
    assert sorted(s["operation"] for s in steps) == ["credit", "debit"]
    assert (tx["status"], a, b) == ("COMPLETED", Decimal("30.00"), Decimal("20.00"))
    # Wait for the one event (a consumer may take seconds to join on a busy machine),
    # then linger for a second one.
    completed = await kafka_events(stack, "transaction.completed", tx_id, 1, linger=3)
    failed = await kafka_events(stack, "transaction.failed", tx_id, 0, linger=3)
    assert len(completed) + len(failed) == 1
