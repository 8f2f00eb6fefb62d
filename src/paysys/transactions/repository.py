"""Queries of the transactions service: flush, never commit."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, literal, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.db import RawTransaction
from paysys.kit.events import utcnow
from paysys.kit.outbox import columns
from paysys.transactions.models import IdempotencyKey, Phase, Status, Transaction

IN_FLIGHT = ("PENDING", "PROCESSING")
# An authorization a runner is capturing or voiding: in flight too (the lease applies).
STEPPING = (Phase.CAPTURING, Phase.VOIDING)


def _in_flight() -> Any:
    return or_(
        Transaction.status.in_(IN_FLIGHT),
        and_(Transaction.status == Status.AUTHORIZED, Transaction.phase.in_(STEPPING)),
    )


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
                _in_flight(),
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
            _in_flight(),
            or_(Transaction.lease_until.is_(None), Transaction.lease_until < func.now()),
        )
        .order_by(Transaction.created_at)
        .limit(limit)
    )
    return list(rows.scalars())


async def expired_authorizations(session: AsyncSession, limit: int = 50) -> list[uuid.UUID]:
    """Authorizations nobody captured or voided before they expired: to void."""
    rows = await session.execute(
        select(Transaction.id)
        .where(
            Transaction.status == Status.AUTHORIZED,
            Transaction.phase == Phase.HELD,
            Transaction.authorization_expires_at <= func.now(),
        )
        .order_by(Transaction.authorization_expires_at)
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
SELECT request_hash, transaction_id, batch_id, response_status,
       response_body::text AS response_body, created_at, expires_at
FROM idempotency_keys WHERE user_id = $1 AND key = $2
"""
# Frees a key that has run out (or an abandoned reservation), only as it was read.
DROP_KEY = "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND created_at = $3"


async def purge_expired_keys(session: AsyncSession) -> None:
    await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < func.now()))


# -- the hot path, on the raw (asyncpg) connection: one statement per commit, for a
# whole group of transactions (group commit) as for one

_COLUMNS = (
    ("id", "uuid"),
    ("type", "text"),
    ("status", "text"),
    ("phase", "text"),
    ("amount", "bigint"),
    ("currency", "text"),
    ("initiator_user_id", "uuid"),
    ("source_wallet_id", "uuid"),
    ("destination_wallet_id", "uuid"),
    ("source_user_id", "uuid"),
    ("destination_user_id", "uuid"),
    ("description", "text"),
    ("steps", "jsonb"),
    ("correlation_id", "text"),
    ("idempotency_key", "text"),
    ("lease_until", "timestamptz"),
    ("attempts", "int"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
    ("batch_id", "uuid"),
    ("batch_index", "int"),
    ("failure_code", "text"),
    ("refunded_transaction_id", "uuid"),
    ("authorization_expires_at", "timestamptz"),
)
_N = len(_COLUMNS)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_ARRAYS = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(_COLUMNS, 1))
# Transactions in flight, born with their lease, and the Idempotency-Keys they come
# with, in one statement. $keyed (one per transaction): it may exist only with a key of
# its own (a keyed create: the key names it) or of its batch (the key names the batch).
# A key another request holds already is not inserted, and neither is what needs it.
INSERT_MANY = f"""
WITH k AS (
  INSERT INTO idempotency_keys (user_id, key, request_hash, transaction_id, batch_id, expires_at)
  SELECT * FROM unnest(${_N + 2}::uuid[], ${_N + 3}::text[], ${_N + 4}::text[],
                       ${_N + 5}::uuid[], ${_N + 6}::uuid[], ${_N + 7}::timestamptz[])
  ON CONFLICT DO NOTHING RETURNING transaction_id, batch_id
)
INSERT INTO transactions ({_NAMES})
SELECT {_NAMES} FROM unnest({_ARRAYS}, ${_N + 1}::bool[]) AS t({_NAMES}, keyed)
WHERE NOT t.keyed OR t.id IN (SELECT transaction_id FROM k)
   OR t.batch_id IN (SELECT batch_id FROM k)
RETURNING id
"""  # noqa: S608 - built from constants


@dataclass(frozen=True)
class NewKey:
    """An Idempotency-Key to take with the transactions: for one transaction, or for a
    batch (its items carry the batch_id)."""

    user_id: uuid.UUID
    key: str
    request_hash: str
    expires_at: datetime
    transaction_id: uuid.UUID | None = None
    batch_id: uuid.UUID | None = None


async def insert_many(
    conn: Any, txs: list[Transaction], keyed: list[bool], keys: list[NewKey]
) -> set[uuid.UUID]:
    """Inserts the transactions with their keys (one statement, one commit); the ids of
    those inserted (a transaction whose key another request holds is not)."""
    values = [
        [orjson.dumps(tx.steps).decode() if name == "steps" else getattr(tx, name) for tx in txs]
        for name, _ in _COLUMNS
    ]
    rows = await conn.fetch(
        INSERT_MANY,
        *values,
        keyed,
        [k.user_id for k in keys],
        [k.key for k in keys],
        [k.request_hash for k in keys],
        [k.transaction_id for k in keys],
        [k.batch_id for k in keys],
        [k.expires_at for k in keys],
    )
    return {row["id"] for row in rows}


# Terminal states with everything they leave behind, in one statement: the events, the
# MongoDB records, the stored idempotent answers. Only for transactions still in flight:
# one another runner finished first is left as it is, with nothing of this statement
# (its events, records and answer are joined to the rows actually updated).
FINISH_MANY = """
WITH f AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])
    AS f(id, status, failure_code, step)
), t AS (
  -- AUTHORIZED (a manual-capture payment whose money is held) is not an end: it
  -- waits, phase 'held', for its capture or void, which end it from then on.
  UPDATE transactions x SET status = f.status, failure_code = f.failure_code,
         phase = CASE WHEN f.status = 'AUTHORIZED' THEN 'held' ELSE 'done' END,
         finished_at = CASE WHEN f.status = 'AUTHORIZED' THEN NULL ELSE $5::timestamptz END,
         lease_until = NULL, updated_at = $5, steps = x.steps || f.step
  FROM f WHERE x.id = f.id AND (x.status IN ('PENDING', 'PROCESSING')
    OR x.status = 'AUTHORIZED' AND x.phase IN ('capturing', 'voiding'))
  RETURNING x.id, x.status, x.amount, x.refunded_transaction_id
), rf AS (
  -- A refund that ends settles its reservation on the original: kept as refunded when
  -- it completed, released when it failed.
  UPDATE transactions o
  SET refund_reserved = o.refund_reserved - r.reserved,
      refunded_amount = o.refunded_amount + r.done
  FROM (SELECT refunded_transaction_id AS id, sum(amount) AS reserved,
               coalesce(sum(amount) FILTER (WHERE status = 'COMPLETED'), 0) AS done
        FROM t WHERE refunded_transaction_id IS NOT NULL GROUP BY 1) r
  WHERE o.id = r.id
), o AS (
  INSERT INTO outbox (event_id, topic, key, payload)
  SELECT e.event_id, e.topic, e.key, e.payload
  FROM unnest($6::uuid[], $7::text[], $8::text[], $9::jsonb[], $10::uuid[])
    AS e(event_id, topic, key, payload, tx)
  WHERE e.tx IN (SELECT id FROM t)
), r AS (
  INSERT INTO records_outbox (event_id, topic, key, payload)
  SELECT e.event_id, e.topic, e.key, e.payload
  FROM unnest($11::uuid[], $12::text[], $13::text[], $14::jsonb[], $15::uuid[])
    AS e(event_id, topic, key, payload, tx)
  WHERE e.tx IN (SELECT id FROM t)
), k AS (
  UPDATE idempotency_keys k SET response_status = a.status, response_body = a.body
  FROM unnest($16::uuid[], $17::text[], $18::int[], $19::jsonb[], $20::uuid[])
    AS a(user_id, key, status, body, tx)
  WHERE k.user_id = a.user_id AND k.key = a.key AND k.response_status IS NULL
    AND a.tx IN (SELECT id FROM t)
)
SELECT id FROM t
"""


@dataclass(frozen=True)
class Answer:
    """The stored answer of an Idempotency-Key, kept when transaction `tx` ends."""

    user_id: uuid.UUID
    key: str
    status: int
    body: dict[str, Any]
    tx: uuid.UUID


async def finish_many(
    conn: Any,
    ends: Sequence[tuple[uuid.UUID, str, str | None, dict[str, Any]]],
    at: datetime,
    events: list[tuple[Any, ...]],
    records: list[tuple[Any, ...]],
    answers: list[Answer],
) -> set[uuid.UUID]:
    """Ends transactions (id, status, failure code, step entry) with their events and
    records (raw rows, each followed by the id of its transaction) and answers; the ids
    of those this call ended."""
    rows = await conn.fetch(
        FINISH_MANY,
        [e[0] for e in ends],
        [e[1] for e in ends],
        [e[2] for e in ends],
        [orjson.dumps([e[3]]).decode() for e in ends],
        at,
        *columns(events, 5),
        *columns(records, 5),
        [a.user_id for a in answers],
        [a.key for a in answers],
        [a.status for a in answers],
        [orjson.dumps(a.body).decode() for a in answers],
        [a.tx for a in answers],
    )
    return {row["id"] for row in rows}


# A refund and its reservation on the original, in one database transaction with its
# key (scoped "refund:<key>"): reserved only if the original is COMPLETED and what is
# still refundable covers it (the CHECK on the sums backs this), so that concurrent
# refunds together never exceed it.
RESERVE_REFUND = """
UPDATE transactions SET refund_reserved = refund_reserved + $2
WHERE id = $1 AND status = 'COMPLETED'
  AND refunded_amount + refund_reserved + $2 <= coalesce(captured_amount, amount)
RETURNING id
"""


async def insert_refund(
    tx: RawTransaction, refund: Transaction, amount: int, key: NewKey | None
) -> str | None:
    """Stores a refund (in flight) with its reservation and its key, in one database
    transaction: None when done, else why not, with nothing kept ("key": another request
    holds the key; "exceeds": not that much is left to refund)."""

    conn = tx.conn

    async def reserve() -> bool:
        if await conn.fetchval(RESERVE_REFUND, refund.refunded_transaction_id, amount) is None:
            return False
        await insert_many(conn, [refund], [False], [])
        return True

    return await _with_key(tx, key, reserve, "exceeds")


async def _with_key(
    tx: RawTransaction, key: NewKey | None, then: Callable[[], Awaitable[bool]], declined: str
) -> str | None:
    """In the caller's database transaction: takes the request's key (if any), then
    does `then`. The transaction is abandoned (nothing kept), and why is said, when
    another request holds the key ("key") or `then` declines (`declined`)."""
    if key is not None and await tx.conn.fetchval(TAKE_KEY, *_key_args(key)) is None:
        tx.abandon()
        return "key"
    if not await then():
        tx.abandon()
        return declined
    return None


TAKE_KEY = """
INSERT INTO idempotency_keys (user_id, key, request_hash, transaction_id, expires_at)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING key
"""


def _key_args(key: NewKey) -> tuple[Any, ...]:
    return key.user_id, key.key, key.request_hash, key.transaction_id, key.expires_at


async def batch_items(conn: Any, batch_id: uuid.UUID) -> list[Transaction]:
    """A batch's transactions, in their order."""
    rows = await conn.fetch(
        f"SELECT {_EVERY} FROM transactions"  # noqa: S608
        " WHERE batch_id = $1 ORDER BY batch_index",
        batch_id,
    )
    return [Transaction(**dict(row)) for row in rows]


# The answer a key keeps: the one stored already, or else this one, stored now. (The
# outer SELECT sees the row as it was before the UPDATE: only one of the two returns.)
_SETTLE_ANSWER = """
WITH s AS (
  UPDATE idempotency_keys SET response_status = $3, response_body = $4::jsonb
  WHERE user_id = $1 AND key = $2 AND response_status IS NULL
  RETURNING response_status, response_body::text AS response_body
)
SELECT response_status, response_body FROM s
UNION ALL
SELECT response_status, response_body::text FROM idempotency_keys
WHERE user_id = $1 AND key = $2 AND response_status IS NOT NULL
"""


async def settle_answer(
    conn: Any, user_id: uuid.UUID, key: str, status: int, body: dict[str, Any]
) -> Any:
    """The key's row (response_status, response_body as text) with the answer it keeps:
    the one stored already, else this one, stored now; None when the key is gone."""
    return await conn.fetchrow(_SETTLE_ANSWER, user_id, key, status, orjson.dumps(body).decode())


# -- authorizations: a capture, a void or the expiry takes an AUTHORIZED payment (phase
# 'held') in one statement: of several racing, exactly one takes it.

# Every column, for a row read raw and handed on as a Transaction.
_EVERY_NAME = [c.name for c in Transaction.__table__.columns]
_EVERY = ", ".join(_EVERY_NAME)
READ = f"SELECT {_EVERY} FROM transactions WHERE id = $1"  # noqa: S608


async def read(conn: Any, tx_id: uuid.UUID) -> Transaction | None:
    """A transaction read raw (one round trip, no ORM session)."""
    row = await conn.fetchrow(READ, tx_id)
    return None if row is None else Transaction(**dict(row))


# The authorization is locked if it still waits (and is in `when`); the request's key is
# taken only then; the claim is made only if the key was taken (or there is none). A
# racing claimer waits on the row lock and then sees it no longer waiting: nothing.
CLAIM_HELD = f"""
WITH t AS (
  SELECT id FROM transactions
  WHERE id = $1 AND status = 'AUTHORIZED' AND phase = 'held'
    AND CASE $7::text WHEN 'unexpired' THEN authorization_expires_at > now()
                      WHEN 'expired' THEN authorization_expires_at <= now() ELSE true END
  FOR UPDATE
), k AS (
  INSERT INTO idempotency_keys (user_id, key, request_hash, transaction_id, expires_at)
  SELECT $8, $9, $10, t.id, $11 FROM t WHERE $8::uuid IS NOT NULL
  ON CONFLICT DO NOTHING RETURNING key
), c AS (
  UPDATE transactions SET phase = $2, captured_amount = $3, failure_code = $4,
         lease_until = now() + make_interval(secs => $5), attempts = attempts + 1,
         updated_at = now(), steps = steps || $6::jsonb
  WHERE id = (SELECT id FROM t) AND ($8::uuid IS NULL OR EXISTS (SELECT 1 FROM k))
  RETURNING {_EVERY}
)
SELECT EXISTS (SELECT 1 FROM t) AS waiting, c.* FROM (SELECT 1) AS one LEFT JOIN c ON true
"""  # noqa: S608


async def claim_held(
    conn: Any,
    tx_id: uuid.UUID,
    phase: Phase,
    *,
    lease: timedelta,
    entry: dict[str, Any],
    captured: int | None = None,
    failure_code: str | None = None,
    when: str = "any",
    key: NewKey | None = None,
) -> Transaction | str:
    """Takes an authorization (phase `held`) for a capture or a void, with the
    request's key, in one statement: the transaction as taken (no read back needed to
    drive it), else why not, with nothing kept ("key": another request holds the key;
    "state": it is not waiting any more, or not in `when`: "unexpired", "expired",
    "any")."""
    row = await conn.fetchrow(
        CLAIM_HELD,
        tx_id,
        phase.value,
        captured,
        failure_code,
        lease.total_seconds(),
        json.dumps([entry]),
        when,
        *((key.user_id, key.key, key.request_hash, key.expires_at) if key else (None,) * 4),
    )
    if not row["waiting"]:
        return "state"
    if row["id"] is None:
        return "key"
    return Transaction(**{name: row[name] for name in _EVERY_NAME})


async def reopen(
    conn: Any, tx_id: uuid.UUID, entry: dict[str, Any], key: tuple[uuid.UUID, str] | None
) -> None:
    """A capture refused (a wallet inactive): the authorization waits again, as it
    was, and the request's key is let go (a retry may capture). In the caller's
    database transaction."""
    await conn.execute(
        "UPDATE transactions SET phase = 'held', captured_amount = NULL, lease_until = NULL,"
        " updated_at = now(), steps = steps || $2::jsonb"
        " WHERE id = $1 AND status = 'AUTHORIZED' AND phase = 'capturing'",
        tx_id,
        json.dumps([entry]),
    )
    if key is not None:
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2"
            " AND response_status IS NULL",
            *key,
        )
