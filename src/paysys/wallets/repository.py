"""Queries of the wallets service: flush, never commit. Balance changes are single
conditional UPDATEs, never read-modify-write in Python."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.wallets.models import CreditFence, LedgerEntry, Refusal, TransferOutcome, Wallet


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
        conditions.append(Wallet.balance >= -delta)
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


# -- the atomic transfer, on the raw (asyncpg) connection: the money path

LOCK_PAIR = """
SELECT id, user_id, currency, balance, status, version, created_at, updated_at
FROM wallets WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE
"""

# The whole move in one statement (it commits alone: one round trip).
# - `lk` locks both wallets in id order (no deadlock between opposite transfers) and,
#   being a locking read, sees their latest committed state, which nobody can change
#   until this commits: every check is made on it, and the new balances are computed
#   from it (not from the statement's snapshot, taken before it waited for the locks),
#   so both updates happen or neither.
# - `oc` inserts the transaction's outcome row: if a twin kept a refusal (or moved)
#   meanwhile, its row is there, whatever this statement's snapshot says, and the
#   primary key fails this whole statement. The NOT EXISTS check only spares the
#   attempt when the outcome is already visible.
# - Each side's `wallet.funds_*` event gets its data here, from the row as updated:
#   $6-$8 and $9 are the envelopes (event id, topic, key, JSON with empty data) in
#   (debit, credit) order; $10 the amount as text; $11 = 10^digits, $12 digits.
# No row back: refused, or a wallet missing (the caller finds out which, and records
# a refusal, in a transaction of its own). Run inside a transaction (after LOCK_PAIR),
# it is the same move.
MOVE = """
WITH lk AS MATERIALIZED (
  SELECT id, currency, balance, status FROM wallets
  WHERE id = ANY(ARRAY[$2::uuid, $3::uuid]) ORDER BY id FOR UPDATE
), ok AS (
  SELECT count(*) = 2
     AND bool_and(status = 'ACTIVE' AND currency = $5::text)
     AND bool_or(id = $2 AND balance >= $4::bigint)
     AND NOT EXISTS (SELECT 1 FROM transfer_outcomes WHERE transaction_id = $1::uuid) AS go
  FROM lk
), d AS (
  UPDATE wallets w SET balance = lk.balance - $4, version = w.version + 1, updated_at = now()
  FROM lk WHERE w.id = $2 AND lk.id = $2 AND (SELECT go FROM ok)
  RETURNING 'debit'::text AS side, w.id, w.user_id, w.currency, w.balance, w.status,
            w.version, w.created_at, w.updated_at
), c AS (
  UPDATE wallets w SET balance = lk.balance + $4, version = w.version + 1, updated_at = now()
  FROM lk WHERE w.id = $3 AND lk.id = $3 AND EXISTS (SELECT 1 FROM d)
  RETURNING 'credit'::text AS side, w.id, w.user_id, w.currency, w.balance, w.status,
            w.version, w.created_at, w.updated_at
), moved AS (
  SELECT * FROM d UNION ALL SELECT * FROM c
), oc AS (
  INSERT INTO transfer_outcomes (transaction_id, outcome)
  SELECT $1::uuid, 'moved' WHERE EXISTS (SELECT 1 FROM d)
), l AS (
  INSERT INTO ledger_entries (wallet_id, transaction_id, operation, amount, balance_after)
  SELECT id, $1::uuid, side, CASE side WHEN 'debit' THEN -$4 ELSE $4 END, balance FROM moved
), o AS (
  INSERT INTO outbox (event_id, topic, key, payload)
  SELECT e.event_id, e.topic, e.key, jsonb_set(e.payload, '{data}', jsonb_build_object(
           'wallet_id', m.id::text, 'user_id', m.user_id::text, 'transaction_id', $1::uuid::text,
           'amount', $10::text, 'currency', m.currency,
           'balance', CASE WHEN $12::int = 0 THEN m.balance::text
                      ELSE (m.balance / $11::bigint)::text || '.'
                           || lpad((m.balance % $11::bigint)::text, $12::int, '0') END))
  FROM unnest($6::uuid[], $7::text[], $8::text[], $9::jsonb[], ARRAY['debit', 'credit'])
       AS e(event_id, topic, key, payload, side)
  JOIN moved m ON m.side = e.side
  WHERE (SELECT count(*) FROM moved) = 2
)
-- Never one side alone (the checks on `lk` rule it out): if it ever happened, this
-- cast fails the statement, and with it everything above.
SELECT *, CASE WHEN n <> 2 THEN ('a transfer moved one side only: ' || n)::int END AS broken
FROM moved, (SELECT count(*) AS n FROM moved) AS sides
"""

# A refusal is kept as the transaction's outcome, unless it has one (moved, or refused
# by a twin) or the money moved under an earlier release (its ledger rows).
REFUSE = """
INSERT INTO transfer_outcomes (transaction_id, outcome, wallet_id, code)
SELECT $1, 'refused', $2, $3
WHERE NOT EXISTS (SELECT 1 FROM ledger_entries WHERE transaction_id = $1)
ON CONFLICT DO NOTHING RETURNING code
"""
