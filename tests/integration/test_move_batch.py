"""wallets' move_batch against the real schema (issue 21): moves applied line by line in
one database transaction, a move spending what an earlier one brought in, a hot wallet
in many items, and two callers sending opposing batches over the same wallets at once."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from paysys.kit.db import Database
from paysys.kit.outbox import Outbox
from paysys.wallets import service
from paysys.wallets.models import outbox as wallets_outbox
from tests.conftest import Stack
from tests.e2e.helpers import kafka_events
from tests.integration.test_transfer_outcome import two_wallets

OUTBOX = Outbox(wallets_outbox, "wallets")


@pytest.fixture
async def conn(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(stack.infra.dsn)
    try:
        yield c
    finally:
        await c.close()


async def wallets(conn: asyncpg.Connection, *balances: int) -> list[uuid.UUID]:
    ids = []
    for balance in balances:
        a, _ = await two_wallets(conn, balance)
        ids.append(a)
    return ids


async def balances(conn: asyncpg.Connection, ids: list[uuid.UUID]) -> list[int]:
    rows = await conn.fetch(
        "SELECT w.id, w.balance, coalesce(sum(l.amount), 0) AS ledger"
        " FROM wallets.wallets w LEFT JOIN wallets.ledger_entries l ON l.wallet_id = w.id"
        " WHERE w.id = ANY($1::uuid[]) GROUP BY w.id",
        ids,
    )
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        assert r["balance"] == r["ledger"] >= 0  # balance is its ledger, never negative
    return [by_id[i]["balance"] for i in ids]


def move(src: uuid.UUID, dst: uuid.UUID, amount: int) -> service.Move:
    return service.Move(uuid.uuid4(), src, dst, amount, "USD")


async def test_moves_go_in_order_and_spend_what_earlier_ones_brought_in(
    stack: Stack, conn: asyncpg.Connection
) -> None:
    db = Database(stack.infra.database_url, "wallets", pool_size=2)
    try:
        a, b, c = await wallets(conn, 100, 0, 0)
        moves = [
            move(a, b, 100),
            move(b, c, 100),  # b had nothing before the move above
            move(c, a, 150),  # more than c holds: refused alone
            move(c, a, 50),
            *[move(a, b, 1) for _ in range(40)],  # a hot wallet in many items
        ]
        applied = await service.move_batch(db, OUTBOX, moves)
        kinds = [type(o).__name__ for o in applied.outcomes]
        assert kinds == ["Moved", "Moved", "Refused", "Moved"] + ["Moved"] * 40
        refused = applied.outcomes[2]
        assert isinstance(refused, service.Refused)
        assert (refused.code, refused.wallet_id) == ("INSUFFICIENT_FUNDS", c)
        assert await balances(conn, [a, b, c]) == [10, 40, 50]
        states = {s["id"]: s["balance"] for s in applied.states}
        assert states == {str(a): 10, str(b): 40, str(c): 50}
        # Asked again, each move gives its first outcome and nothing moves.
        again = await service.move_batch(db, OUTBOX, moves)
        assert [type(o).__name__ for o in again.outcomes] == kinds
        assert await balances(conn, [a, b, c]) == [10, 40, 50]
        # Every move that happened has its two events, once. Read from Kafka, not from
        # the outbox table: the stack's own wallets relay publishes and deletes its rows.
        ids = {str(m.transaction_id) for m in moves}
        for topic in ("wallet.funds_deducted", "wallet.funds_added"):
            found = await kafka_events(
                stack, topic, None, 43, where=lambda e: e["data"]["transaction_id"] in ids
            )
            assert len(found) == 43, topic
            assert len({e["data"]["transaction_id"] for e in found}) == 43, topic
        # A batch naming one transaction twice moves nothing at all.
        with pytest.raises(asyncpg.UniqueViolationError):
            twice = move(a, b, 1)
            await service.move_batch(db, OUTBOX, [twice, twice])
        assert await balances(conn, [a, b, c]) == [10, 40, 50]
    finally:
        await db.dispose()


async def test_opposing_batches_from_two_callers_never_deadlock_and_conserve(
    stack: Stack, conn: asyncpg.Connection
) -> None:
    # Two pools: two wallets instances' worth of connections, four callers each, for
    # 10 s sending batches over the same six hot wallets in random (so opposing) orders.
    pools = [Database(stack.infra.database_url, "wallets", pool_size=4) for _ in range(2)]
    hot = await wallets(conn, *[1_000] * 6)
    rng = random.Random(21)
    deadline = time.monotonic() + 10
    done = refused = 0

    async def caller(db: Database) -> None:
        nonlocal done, refused
        while time.monotonic() < deadline:
            batch = []
            for _ in range(rng.randint(1, 30)):
                src, dst = rng.sample(hot, 2)
                batch.append(move(src, dst, rng.randint(1, 400)))
            applied = await service.move_batch(db, OUTBOX, batch)
            done += len(batch)
            refused += sum(isinstance(o, service.Refused) for o in applied.outcomes)

    try:
        await asyncio.gather(*(caller(db) for db in pools for _ in range(4)))
    finally:
        for db in pools:
            await db.dispose()
    assert sum(await balances(conn, hot)) == 6_000
    assert done > 100 and 0 < refused < done
