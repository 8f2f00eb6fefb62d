"""Queries of the wallets service: flush, never commit. Balance changes are single
conditional UPDATEs, never read-modify-write in Python."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.wallets.models import (
    CreditFence,
    Hold,
    LedgerEntry,
    Refusal,
    TransferOutcome,
    Wallet,
)


async def get(session: AsyncSession, wallet_id: uuid.UUID) -> Wallet | None:
    return await session.get(Wallet, wallet_id, populate_existing=True)


async def list_for(session: AsyncSession, user_id: uuid.UUID) -> list[Wallet]:
    rows = await session.execute(
        select(Wallet).where(Wallet.user_id == user_id).order_by(Wallet.created_at.desc())
    )
    return list(rows.scalars())


async def lock_transaction(session: AsyncSession, transaction_id: uuid.UUID) -> None:
    """Serialises every balance change of one transaction (until commit): a retry that
    arrives while its twin is still running waits, then sees the twin's result."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:t, 0))"), {"t": str(transaction_id)}
    )


async def fenced(session: AsyncSession, transaction_id: uuid.UUID) -> bool:
    return await session.get(CreditFence, transaction_id) is not None


async def add_fence(session: AsyncSession, transaction_id: uuid.UUID) -> None:
    await session.execute(
        pg_insert(CreditFence).values(transaction_id=transaction_id).on_conflict_do_nothing()
    )


async def refusal(
    session: AsyncSession, transaction_id: uuid.UUID, operation: str
) -> Refusal | None:
    return await session.get(Refusal, (transaction_id, operation))


async def add_refusal(
    session: AsyncSession,
    transaction_id: uuid.UUID,
    operation: str,
    wallet_id: uuid.UUID,
    code: str,
) -> None:
    await session.execute(
        pg_insert(Refusal)
        .values(transaction_id=transaction_id, operation=operation, wallet_id=wallet_id, code=code)
        .on_conflict_do_nothing()
    )


async def outcome(session: AsyncSession, transaction_id: uuid.UUID) -> TransferOutcome | None:
    return await session.get(TransferOutcome, transaction_id, populate_existing=True)


async def add_outcome(
    session: AsyncSession,
    transaction_id: uuid.UUID,
    outcome: str,
    wallet_id: uuid.UUID | None,
    code: str | None,
) -> None:
    await session.execute(
        pg_insert(TransferOutcome).values(
            transaction_id=transaction_id, outcome=outcome, wallet_id=wallet_id, code=code
        )
    )


async def entry(
    session: AsyncSession, transaction_id: uuid.UUID, operation: str
) -> LedgerEntry | None:
    return (
        await session.execute(
            select(LedgerEntry).where(
                LedgerEntry.transaction_id == transaction_id, LedgerEntry.operation == operation
            )
        )
    ).scalar_one_or_none()


async def apply_change(
    session: AsyncSession, wallet_id: uuid.UUID, delta: int, *, require_active: bool
) -> Wallet | None:
    """balance += delta in one statement; None when the wallet is missing, inactive
    (if required) or the result would be negative."""
    conditions = [Wallet.id == wallet_id]
    if require_active:
        conditions.append(Wallet.status == "ACTIVE")
    if delta < 0:
        conditions.append(Wallet.balance - Wallet.held_balance >= -delta)
    row = (
        await session.execute(
            update(Wallet)
            .where(*conditions)
            .values(
                balance=Wallet.balance + delta,
                version=Wallet.version + 1,
                updated_at=func.now(),
            )
            .returning(Wallet)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).scalar_one_or_none()
    return row


async def set_status(session: AsyncSession, wallet_id: uuid.UUID, status: str) -> Wallet | None:
    return (
        await session.execute(
            update(Wallet)
            .where(Wallet.id == wallet_id)
            .values(status=status, version=Wallet.version + 1, updated_at=func.now())
            .returning(Wallet)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    ).scalar_one_or_none()


async def lock_wallets(session: AsyncSession, ids: list[uuid.UUID]) -> list[Wallet]:
    """The wallets that exist among `ids`, locked in id order (as move_batch locks)."""
    rows = await session.execute(
        select(Wallet)
        .where(Wallet.id.in_(ids))
        .order_by(Wallet.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return list(rows.scalars())


async def hold(session: AsyncSession, transaction_id: uuid.UUID) -> Hold | None:
    return await session.get(Hold, transaction_id, populate_existing=True)


# -- transfers and payments in batches, on the raw (asyncpg) connection: the money path

# One round trip and one commit for the whole batch: see migrations 0009 and 0012.
MOVE_BATCH = (
    "SELECT * FROM move_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
    " $13, $14, $15, $16)"
)

# Many holds in one statement and one commit (hold_funds of migration 0013 for each,
# alone or many): migration 0015.
HOLD_BATCH = "SELECT * FROM hold_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
HOLD_WALLETS = (
    "SELECT wallet_id, destination_wallet_id FROM holds WHERE transaction_id = ANY($1::uuid[])"
)
# Many captures in one statement and one commit (capture_hold of migration 0013 for
# each, alone or many): migration 0017.
CAPTURE_BATCH = "SELECT * FROM capture_batch($1, $2, $3, $4, $5, $6, $7, $8, $9)"

# -- statements and balances at an instant (raw, in one snapshot: Database.snapshot)

# The last entry before the instant: one step down the (wallet_id, created_at, id) index.
BALANCE_AT = """
SELECT balance_after FROM ledger_entries
 WHERE wallet_id = $1 AND created_at < $2
 ORDER BY created_at DESC, id DESC LIMIT 1
"""

ENTRIES_BETWEEN = """
SELECT created_at, transaction_id, kind, amount, balance_after, description,
       counterparty_wallet_id
  FROM ledger_entries
 WHERE wallet_id = $1 AND created_at >= $2 AND created_at < $3
 ORDER BY created_at, id
"""


async def balance_at(conn: Any, wallet_id: uuid.UUID, at: datetime) -> int:
    return int(await conn.fetchval(BALANCE_AT, wallet_id, at) or 0)


async def lock_wallet(session: AsyncSession, wallet_id: uuid.UUID) -> Wallet | None:
    rows = await lock_wallets(session, [wallet_id])
    return rows[0] if rows else None
