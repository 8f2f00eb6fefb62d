"""Idempotency keys against the real transactions schema: a key is taken in the same
statement as its transaction, so of requests racing with one key exactly one creates a
transaction, and a key never names two."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from paysys.kit.db import Database
from paysys.kit.events import utcnow
from paysys.transactions import repository
from paysys.transactions.models import Transaction
from tests.conftest import Stack


def _transfer(user: uuid.UUID, key: str) -> Transaction:
    now = utcnow()
    return Transaction(
        id=uuid.uuid4(),
        type="transfer",
        status="PROCESSING",
        phase="started",
        amount=100,
        currency="USD",
        initiator_user_id=user,
        source_wallet_id=uuid.uuid4(),
        destination_wallet_id=uuid.uuid4(),
        source_user_id=user,
        destination_user_id=uuid.uuid4(),
        description=None,
        steps=[],
        correlation_id="req-idem",
        idempotency_key=key,
        lease_until=now + timedelta(seconds=30),
        attempts=1,
        created_at=now,
        updated_at=now,
    )


async def test_of_ten_racing_inserts_with_one_key_one_creates_a_transaction(
    stack: Stack,
) -> None:
    db = Database(stack.infra.database_url, "transactions", pool_size=10)
    user, key = uuid.uuid4(), f"race-{uuid.uuid4().hex[:8]}"
    expires = utcnow() + timedelta(hours=1)

    async def insert() -> uuid.UUID | None:
        tx = _transfer(user, key)
        new_key = repository.NewKey(user, key, "h", expires, transaction_id=tx.id)
        async with db.raw() as conn:
            created = await repository.insert_many(conn, [tx], [True], [new_key])
        return tx.id if created else None

    try:
        created = [c for c in await asyncio.gather(*(insert() for _ in range(10))) if c]
        assert len(created) == 1
        async with db.raw() as conn:
            state = await conn.fetchrow(repository.KEY_STATE, user, key)
            n = await conn.fetchval(
                "SELECT count(*) FROM transactions WHERE initiator_user_id = $1", user
            )
        assert state["transaction_id"] == created[0] and n == 1
        # A transaction born FAILED cannot take the key either: nothing of it is kept.
        async with db.uow() as s:
            taken = await repository.take_key(
                s, user, key, "h", expires, uuid.uuid4(), 400, {"code": "X"}
            )
        assert not taken
    finally:
        await db.dispose()
