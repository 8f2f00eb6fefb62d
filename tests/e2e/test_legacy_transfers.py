"""Transfers the legacy saga left half-moved (finding 19.2). That saga debited the
source while `started` and credited in a second step; a crash between the two left a
debit and no credit. The one-statement move then met the debit's ledger row and
answered "moved" on it alone: COMPLETED with no credit, the money gone. Now a
transfer counts as moved only with both legs: the recovery worker's move finishes a
half-moved one (the credit), or gives it back when the credit is refused."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx

from tests.conftest import Stack, eventually
from tests.e2e.money import balance, funded_user, uid

AMOUNT = 1250  # $12.50


async def half_moved_legacy_transfer(
    stack: Stack,
    user: dict[str, Any],
    src: dict[str, Any],
    dst_user: dict[str, Any],
    dst: dict[str, Any],
) -> uuid.UUID:
    """What the legacy saga left after a crash: the row `started` (its lease run out),
    the source debited with its ledger row, no credit."""
    tx = uuid.uuid4()
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO transactions.transactions (id, type, status, phase, amount, currency,"
                " initiator_user_id, source_wallet_id, destination_wallet_id, source_user_id,"
                " destination_user_id, steps, attempts, lease_until, created_at, updated_at)"
                " VALUES ($1, 'transfer', 'PROCESSING', 'started', $2, 'USD', $3, $4, $5, $3, $6,"
                " '[]'::jsonb, 1, now() - interval '1 minute', now() - interval '2 minutes',"
                " now() - interval '2 minutes')",
                tx,
                AMOUNT,
                uid(user["id"]),
                uid(src["id"]),
                uid(dst["id"]),
                uid(dst_user["id"]),
            )
            after = await conn.fetchval(
                "UPDATE wallets.wallets SET balance = balance - $2, version = version + 1"
                " WHERE id = $1 RETURNING balance",
                uid(src["id"]),
                AMOUNT,
            )
            await conn.execute(
                "INSERT INTO wallets.ledger_entries (wallet_id, transaction_id, operation, amount,"
                " balance_after) VALUES ($1, $2, 'debit', $3, $4)",
                uid(src["id"]),
                tx,
                -AMOUNT,
                after,
            )
    finally:
        await conn.close()
    return tx


async def settled(stack: Stack, tx: uuid.UUID) -> asyncpg.Record:
    async def terminal() -> Any:
        conn = await asyncpg.connect(stack.infra.dsn)
        try:
            row = await conn.fetchrow(
                "SELECT status, failure_code FROM transactions.transactions WHERE id = $1", tx
            )
        finally:
            await conn.close()
        return row if row["status"] in ("COMPLETED", "FAILED") else None

    return await eventually(terminal, timeout=60)


async def stored_balance(stack: Stack, wallet_id: str) -> int:
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        return int(
            await conn.fetchval("SELECT balance FROM wallets.wallets WHERE id = $1", uid(wallet_id))
        )
    finally:
        await conn.close()


async def legs(stack: Stack, tx: uuid.UUID) -> dict[str, int]:
    conn = await asyncpg.connect(stack.infra.dsn)
    try:
        rows = await conn.fetch(
            "SELECT wallet_id, sum(amount) AS net FROM wallets.ledger_entries"
            " WHERE transaction_id = $1 GROUP BY wallet_id",
            tx,
        )
    finally:
        await conn.close()
    return {str(r["wallet_id"]): int(r["net"]) for r in rows}


async def test_a_half_moved_legacy_transfer_is_finished_with_its_credit(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user, auth, src = await funded_user(api, "50.00")
    dst_user, dst_auth, dst = await funded_user(api, "0")
    tx = await half_moved_legacy_transfer(stack, user, src, dst_user, dst)
    row = await settled(stack, tx)
    assert row["status"] == "COMPLETED"
    assert await legs(stack, tx) == {src["id"]: -AMOUNT, dst["id"]: AMOUNT}
    # Straight from PostgreSQL: the debit above went around the service's cache.
    assert await stored_balance(stack, src["id"]) == 5000 - AMOUNT
    assert await stored_balance(stack, dst["id"]) == AMOUNT
    assert await balance(api, dst_auth, dst["id"]) == "12.50"
    got = await api.get(f"/transactions/{tx}", headers=auth)
    assert got.json()["status"] == "COMPLETED"


async def test_a_half_moved_legacy_transfer_whose_credit_is_refused_is_given_back(
    api: httpx.AsyncClient, stack: Stack
) -> None:
    user, auth, src = await funded_user(api, "50.00")
    dst_user, dst_auth, dst = await funded_user(api, "0")
    off = await api.post(f"/wallets/{dst['id']}/deactivate", headers=dst_auth)
    assert off.status_code == 200
    tx = await half_moved_legacy_transfer(stack, user, src, dst_user, dst)
    row = await settled(stack, tx)
    assert row["status"] == "FAILED"
    assert row["failure_code"] == "WALLET_INACTIVE"
    assert await legs(stack, tx) == {src["id"]: 0}  # debited, then given back
    assert await stored_balance(stack, src["id"]) == 5000
    assert await balance(api, auth, src["id"]) == "50.00"
    assert await stored_balance(stack, dst["id"]) == 0
