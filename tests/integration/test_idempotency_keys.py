"""Idempotency keys against the real transactions schema: a reservation taken over after
its request looked abandoned can no longer be linked by that request, so one key never
names two transactions."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import update

from paysys.kit.db import Database
from paysys.transactions import repository
from paysys.transactions.models import IdempotencyKey
from tests.conftest import Stack


async def test_a_slow_first_request_cannot_link_a_key_taken_over_by_a_retry(
    stack: Stack,
) -> None:
    db = Database(stack.infra.database_url, "transactions", pool_size=2)
    user, key = uuid.uuid4(), f"slow-{uuid.uuid4().hex[:8]}"
    first, second = uuid.uuid4(), uuid.uuid4()
    try:
        async with db.uow() as s:
            assert await repository.reserve_key(s, user, key, "h", timedelta(hours=1), first)
        async with db.uow() as s:  # the first request validates for a long time ...
            await s.execute(
                update(IdempotencyKey)
                .where(IdempotencyKey.user_id == user, IdempotencyKey.key == key)
                .values(created_at=IdempotencyKey.created_at - timedelta(minutes=5))
            )
        async with db.uow() as s:  # ... so a retry takes the key over
            assert await repository.take_over_key(s, user, key, first, second, "h")
        async with db.uow() as s:  # the first request finishes validating: too late
            assert not await repository.link_key(s, user, key, first, uuid.uuid4())
        async with db.uow() as s:  # nor can a third request take it from the second
            assert not await repository.take_over_key(s, user, key, first, uuid.uuid4(), "h")
        tx = uuid.uuid4()
        async with db.uow() as s:
            assert await repository.link_key(s, user, key, second, tx)
        async with db.uow() as s:  # once linked, it is nobody's to take or release
            assert not await repository.take_over_key(s, user, key, second, uuid.uuid4(), "h")
            await repository.release_key(s, user, key, second)
            row = await repository.get_key(s, user, key)
        assert row is not None and row.transaction_id == tx
    finally:
        await db.dispose()
