"""Queries of the transactions service: flush, never commit."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.events import utcnow
from paysys.transactions.models import IdempotencyKey, Transaction

IN_FLIGHT = ("PENDING", "PROCESSING")


def step(name: str, outcome: str, **extra: Any) -> dict[str, Any]:
    return {"step": name, "outcome": outcome, "at": utcnow().isoformat(), **extra}


async def get(session: AsyncSession, tx_id: uuid.UUID) -> Transaction | None:
    return await session.get(Transaction, tx_id, populate_existing=True)


async def claim(session: AsyncSession, tx_id: uuid.UUID, lease: timedelta) -> bool:
    """Takes the saga's lease if nobody holds it (or theirs ran out)."""
    now = func.now()
    row = (
        await session.execute(
            update(Transaction)
            .where(
                Transaction.id == tx_id,
                Transaction.status.in_(IN_FLIGHT),
                or_(Transaction.lease_until.is_(None), Transaction.lease_until < now),
            )
            .values(lease_until=now + lease, attempts=Transaction.attempts + 1)
            .returning(Transaction.id)
        )
    ).first()
    return row is not None


async def advance(
    session: AsyncSession,
    tx_id: uuid.UUID,
    lease: timedelta,
    entry: dict[str, Any] | None,
    from_phase: str,
    **values: Any,
) -> bool:
    """Records progress (and renews the lease) if the transaction is still in flight in
    `from_phase`; False when another runner has moved it on (or finished it) since."""
    if entry is not None:
        values["steps"] = Transaction.steps.op("||")(literal([entry], JSONB))
    row = (
        await session.execute(
            update(Transaction)
            .where(
                Transaction.id == tx_id,
                Transaction.status.in_(IN_FLIGHT),
                Transaction.phase == from_phase,
            )
            .values(lease_until=func.now() + lease, updated_at=func.now(), **values)
            .returning(Transaction.id)
        )
    ).first()
    return row is not None


async def stale_in_flight(session: AsyncSession, limit: int = 20) -> list[uuid.UUID]:
    rows = await session.execute(
        select(Transaction.id)
        .where(
            Transaction.status.in_(IN_FLIGHT),
            or_(Transaction.lease_until.is_(None), Transaction.lease_until < func.now()),
        )
        .order_by(Transaction.created_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def in_flight_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Transaction.status, func.count())
        .where(Transaction.status.in_(IN_FLIGHT))
        .group_by(Transaction.status)
    )
    counts = {status: 0 for status in IN_FLIGHT}
    counts.update({status: int(n) for status, n in rows.all()})
    return counts


async def stuck_count(session: AsyncSession, window_seconds: float) -> int:
    return int(
        (
            await session.execute(
                select(func.count())
                .select_from(Transaction)
                .where(
                    Transaction.status.in_(IN_FLIGHT),
                    Transaction.created_at < func.now() - timedelta(seconds=window_seconds),
                )
            )
        ).scalar_one()
    )


async def visible(
    session: AsyncSession, tx_id: uuid.UUID, user_id: uuid.UUID
) -> Transaction | None:
    tx = await get(session, tx_id)
    if tx is None or user_id not in (tx.source_user_id, tx.destination_user_id):
        return None
    return tx


async def page(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    wallet_id: uuid.UUID | None,
    type_: str | None,
    status: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Transaction]:
    conditions = [
        or_(Transaction.source_user_id == user_id, Transaction.destination_user_id == user_id)
    ]
    if wallet_id is not None:
        conditions.append(
            or_(
                Transaction.source_wallet_id == wallet_id,
                Transaction.destination_wallet_id == wallet_id,
            )
        )
    if type_ is not None:
        conditions.append(Transaction.type == type_)
    if status is not None:
        conditions.append(Transaction.status == status)
    if after is not None:
        conditions.append(tuple_(Transaction.created_at, Transaction.id) < tuple_(*after))
    rows = await session.execute(
        select(Transaction)
        .where(and_(*conditions))
        .order_by(Transaction.created_at.desc(), Transaction.id.desc())
        .limit(limit + 1)
    )
    return list(rows.scalars())


# -- idempotency keys: taken with the transaction, in the same statement


async def take_key(
    session: AsyncSession,
    user_id: uuid.UUID,
    key: str,
    request_hash: str,
    expires_at: datetime,
    tx_id: uuid.UUID,
    status: int,
    body: dict[str, Any],
) -> bool:
    """The key with its transaction and answer (a transaction born FAILED); False when
    another request holds the key already."""
    inserted = (
        await session.execute(
            pg_insert(IdempotencyKey)
            .values(
                user_id=user_id,
                key=key,
                request_hash=request_hash,
                transaction_id=tx_id,
                response_status=status,
                response_body=body,
                expires_at=expires_at,
            )
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
        )
    ).first()
    return inserted is not None


KEY_STATE = """
SELECT request_hash, transaction_id, response_status, response_body::text AS response_body,
       created_at, expires_at
FROM idempotency_keys WHERE user_id = $1 AND key = $2
"""
# Frees a key that has run out (or an abandoned reservation), only as it was read.
DROP_KEY = "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND created_at = $3"


async def purge_expired_keys(session: AsyncSession) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < func.now()))


# -- the hot path, on the raw (asyncpg) connection: one statement per commit

_INSERT_COLUMNS = (
    "id, type, status, phase, amount, currency, initiator_user_id, source_wallet_id, "
    "destination_wallet_id, source_user_id, destination_user_id, description, steps, "
    "correlation_id, idempotency_key, lease_until, attempts, created_at, updated_at"
)
_INSERT_VALUES = (
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17, $18, $18"
)
# A transaction in flight, born with its lease.
INSERT = f"INSERT INTO transactions ({_INSERT_COLUMNS}) VALUES ({_INSERT_VALUES}) RETURNING id"  # noqa: S608 - built from constants
# The same with its Idempotency-Key ($19 user, $15 key, $20 body fingerprint, $21
# expiry), taken in the same statement: both, or (another request has the key) neither.
INSERT_KEYED = f"""
WITH k AS (
  INSERT INTO idempotency_keys (user_id, key, request_hash, transaction_id, expires_at)
  VALUES ($19, $15, $20, $1, $21) ON CONFLICT DO NOTHING RETURNING key
)
INSERT INTO transactions ({_INSERT_COLUMNS})
SELECT {_INSERT_VALUES} WHERE EXISTS (SELECT 1 FROM k)
RETURNING id
"""  # noqa: S608 - built from constants


def insert_args(tx: Transaction) -> list[Any]:
    return [
        tx.id,
        tx.type,
        tx.status,
        tx.phase,
        tx.amount,
        tx.currency,
        tx.initiator_user_id,
        tx.source_wallet_id,
        tx.destination_wallet_id,
        tx.source_user_id,
        tx.destination_user_id,
        tx.description,
        json.dumps(tx.steps),
        tx.correlation_id,
        tx.idempotency_key,
        tx.lease_until,
        tx.attempts,
        tx.created_at,
    ]


# The terminal state with everything it leaves behind, in one statement: the event, the
# MongoDB records, the stored idempotent answer. Only if the transaction is still in
# flight: another runner that finished first makes this a no-op (no row returned).
FINISH = """
WITH t AS (
  UPDATE transactions SET status = $2, phase = 'done', failure_code = $3, lease_until = NULL,
         updated_at = $4, finished_at = $4, steps = steps || $5::jsonb
  WHERE id = $1 AND status IN ('PENDING', 'PROCESSING')
  RETURNING id
), o AS (
  INSERT INTO outbox (event_id, topic, key, payload)
  SELECT * FROM unnest($6::uuid[], $7::text[], $8::text[], $9::jsonb[])
  WHERE EXISTS (SELECT 1 FROM t)
), r AS (
  INSERT INTO records_outbox (event_id, topic, key, payload)
  SELECT * FROM unnest($10::uuid[], $11::text[], $12::text[], $13::jsonb[])
  WHERE EXISTS (SELECT 1 FROM t)
), k AS (
  UPDATE idempotency_keys SET response_status = $14, response_body = $15::jsonb
  WHERE user_id = $16 AND key = $17 AND response_status IS NULL AND EXISTS (SELECT 1 FROM t)
)
SELECT id FROM t
"""
