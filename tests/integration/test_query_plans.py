"""The pollers that run every few seconds in every instance read through an index,
never a scan of a table that only grows (EXPLAIN against the real schemas)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from paysys.kit.db import Database
from paysys.kit.outbox import OutboxRelay
from paysys.transactions import models as tx_models
from tests.conftest import Stack


class NoSink:
    async def publish(self, rows: object) -> None:
        return None

    async def close(self) -> None:
        return None


def _sql(statement: object) -> str:
    return str(
        statement.compile(  # type: ignore[attr-defined]
            dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}
        )
    )


async def plan(db: Database, sql: str) -> str:
    async with db.engine.connect() as conn:
        # With sequential scans priced out, a plan still showing one has no index to use.
        await conn.execute(text("SET enable_seqscan = off"))
        rows = (await conn.execute(text(f"EXPLAIN {sql}"))).scalars().all()
    return "\n".join(rows)


async def test_recovery_and_relay_pollers_use_indexes(stack: Stack) -> None:
    db = Database(stack.infra.database_url, "transactions", pool_size=1)
    try:
        stale = _sql(
            tx_models.Transaction.__table__.select()
            .with_only_columns(tx_models.Transaction.id)
            .where(
                tx_models.Transaction.status.in_(("PENDING", "PROCESSING")),
                text("(lease_until IS NULL OR lease_until < now())"),
            )
        )
        for table in (tx_models.outbox, tx_models.records_outbox):
            relay = OutboxRelay(db, table, "plan-test", NoSink())
            claim = relay.claim_sql.replace(" FOR UPDATE SKIP LOCKED", "").replace("$1", "1")
            assert "Seq Scan" not in await plan(db, claim), table.name
        assert "Seq Scan" not in await plan(db, stale)
    finally:
        await db.dispose()
