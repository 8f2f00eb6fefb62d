"""The batch move (a batch of one here) against the real wallets schema, with its race made
deterministic: a second connection holds the row locks the move waits for.

Finding 19.3: the move's "no refusal kept" check read the statement's snapshot, taken
before it waited for the locks, so a twin's refusal committed meanwhile went unseen;
with funds arrived meanwhile the money moved although the transaction was refused
(FAILED for the saga, moved in the ledger). The outcome of a transaction is now one row
that the move and the refusal both insert: exactly one of them can exist."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from paysys.kit.db import Database
from paysys.kit.outbox import Outbox
from paysys.wallets import service
from paysys.wallets.models import outbox as wallets_outbox
from tests.conftest import Stack


async def transfer(
    db: Database,
    outbox: Outbox,
    tx: uuid.UUID,
    source: uuid.UUID,
    destination: uuid.UUID,
    amount: int,
    currency: str,
) -> object:
    applied = await service.move_batch(
        db, outbox, [service.Move(tx, source, destination, amount, currency)]
    )
    return applied.outcomes[0]


@pytest.fixture
async def wallets_db(stack: Stack) -> AsyncIterator[Database]:
    db = Database(stack.infra.database_url, "wallets", pool_size=2)
    try:
        yield db
    finally:
        await db.dispose()


async def two_wallets(conn: asyncpg.Connection, source_balance: int) -> tuple[uuid.UUID, uuid.UUID]:
    ids = sorted([uuid.uuid4(), uuid.uuid4()])
    for wallet_id, balance in zip(ids, (source_balance, 0), strict=True):
        await conn.execute(
            "INSERT INTO wallets.wallets (id, user_id, currency, balance, status, version)"
            " VALUES ($1, $2, 'USD', $3, 'ACTIVE', 0)",
            wallet_id,
            uuid.uuid4(),
            0,
        )
        if balance:  # money arrives as the ledger says, never from nowhere
            await conn.execute(
                "UPDATE wallets.wallets SET balance = $2 WHERE id = $1", wallet_id, balance
            )
            await conn.execute(
                "INSERT INTO wallets.ledger_entries (wallet_id, transaction_id, operation,"
                " amount, balance_after) VALUES ($1, $2, 'credit', $3, $3)",
                wallet_id,
                uuid.uuid4(),
                balance,
            )
    return ids[0], ids[1]


async def test_a_refusal_committed_while_the_move_waits_for_its_locks_wins(
    stack: Stack, wallets_db: Database
) -> None:
    conn = await asyncpg.connect(stack.infra.dsn)
    holder = await asyncpg.connect(stack.infra.dsn, server_settings={"search_path": "wallets"})
    try:
        source, destination = await two_wallets(conn, source_balance=50)
        tx = uuid.uuid4()
        outbox = Outbox(wallets_outbox, "wallets")
        # The twin: it holds both rows' locks, decides "insufficient funds" and keeps
        # the refusal; before it commits, a deposit's credit lands (same transaction
        # here, to fix the order).
        twin = holder.transaction()
        await twin.start()
        await holder.fetch(
            "SELECT id FROM wallets.wallets WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
            [source, destination],
        )
        move = asyncio.create_task(
            transfer(wallets_db, outbox, tx, source, destination, 100, "USD")
        )
        # The move is now waiting for the rows (its snapshot already taken).
        for _ in range(100):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%move_batch%' AND pid <> $1",
                holder.get_server_pid(),
            )
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert waiting, "the move never waited for the locks"
        # The twin keeps its refusal as the wallets service does (its outcome row).
        await holder.execute(
            "INSERT INTO transfer_outcomes (transaction_id, outcome, wallet_id, code)"
            " VALUES ($1, 'refused', $2, 'INSUFFICIENT_FUNDS')",
            tx,
            source,
        )
        await holder.execute(
            "UPDATE wallets.wallets SET balance = balance + 100 WHERE id = $1", source
        )
        await holder.execute(
            "INSERT INTO wallets.ledger_entries (wallet_id, transaction_id, operation, amount,"
            " balance_after) VALUES ($1, $2, 'credit', 100, 150)",
            source,
            uuid.uuid4(),
        )
        await twin.commit()
        outcome = await asyncio.wait_for(move, 10)
        assert isinstance(outcome, service.Refused), outcome
        assert outcome.code == "INSUFFICIENT_FUNDS"
        moved = await conn.fetchval(
            "SELECT count(*) FROM wallets.ledger_entries WHERE transaction_id = $1", tx
        )
        assert moved == 0
        assert (
            await conn.fetchval("SELECT balance FROM wallets.wallets WHERE id = $1", source) == 150
        )
        # Asked again, the same refusal.
        again = await transfer(wallets_db, outbox, tx, source, destination, 100, "USD")
        assert isinstance(again, service.Refused)
    finally:
        await conn.close()
        await holder.close()


async def test_the_database_refuses_to_change_the_ledger_or_overdraw_a_wallet(
    stack: Stack,
) -> None:
    # Issue 20.13: the append-only trigger and CHECK (balance >= 0) are the last line,
    # below every service: shown here against the real schema.
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        source, _ = await two_wallets(conn, source_balance=10)
        for statement in (
            "UPDATE wallets.ledger_entries SET amount = amount * 2 WHERE wallet_id = $1",
            "DELETE FROM wallets.ledger_entries WHERE wallet_id = $1",
        ):
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(statement, source)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE wallets.wallets SET balance = -1 WHERE id = $1", source)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO wallets.ledger_entries (wallet_id, transaction_id, operation,"
                " amount, balance_after) VALUES ($1, $2, 'debit', -20, -10)",
                source,
                uuid.uuid4(),
            )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM wallets.ledger_entries WHERE wallet_id = $1", source
            )
            == 1
        )
    finally:
        await conn.close()
