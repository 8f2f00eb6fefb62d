"""The deposit-owner routes that pair a card processor's event with its deposit's owner
(notifications.service.add_deliveries) are forgotten once older than they can be
needed: what is older than the keep goes, what is newer stays."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg

from paysys.kit.db import Database
from paysys.notifications.service import prune_routes
from tests.conftest import Stack


async def test_routes_older_than_the_keep_are_pruned_and_newer_ones_kept(stack: Stack) -> None:
    conn = await asyncpg.connect(stack.infra.dsn)
    old, new = uuid.uuid4(), uuid.uuid4()
    try:
        for tx, age in ((old, timedelta(days=9)), (new, timedelta(hours=1))):
            await conn.execute(
                "INSERT INTO notifications.deposit_owners (transaction_id, user_id, created_at)"
                " VALUES ($1, $2, now() - $3::interval)",
                tx,
                uuid.uuid4(),
                age,
            )
            await conn.execute(
                "INSERT INTO notifications.webhook_routes"
                " (event_id, transaction_id, event_type, body, created_at)"
                " VALUES ($1, $2, 'payment.processed', '{}', now() - $3::interval)",
                uuid.uuid4(),
                tx,
                age,
            )
        db = Database(stack.infra.database_url, "notifications", pool_size=1)
        try:
            async with db.uow() as session:
                gone = await prune_routes(session, timedelta(days=8))
        finally:
            await db.dispose()
        assert gone >= 2  # (earlier tests' rows are all younger than the keep)
        for table in ("deposit_owners", "webhook_routes"):
            kept = {
                r["transaction_id"]
                for r in await conn.fetch(
                    f"SELECT transaction_id FROM notifications.{table}"
                    " WHERE transaction_id = ANY($1::uuid[])",
                    [old, new],
                )
            }
            assert kept == {new}, table
    finally:
        await conn.close()
