"""The pollers that run every few seconds in every instance read through an index,
never a scan of a table that only grows (EXPLAIN against the real schemas); a relay's
claim reads about a batch, however large its backlog and however stale its table's
statistics."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from paysys.kit.db import Database
from paysys.kit.outbox import SEQSCAN_OFF, OutboxRelay
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


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


async def test_a_relay_claims_by_the_primary_key_whatever_its_backlog(stack: Stack) -> None:
    # An outbox grows from nothing to tens of thousands of rows within a minute of load,
    # long before autovacuum renews its statistics. Planned on the old ones, the claim
    # read and sorted the whole backlog (170 ms a call with 17,000 pending, in a bulk
    # run), so a relay that fell behind fell further behind. Here: statistics taken on
    # an empty table, then a backlog of 20,000 rows; the relay's claim, as it runs it,
    # must read about a batch, not the backlog.
    schema = f"plan_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(stack.infra.dsn)
    db = Database(stack.infra.database_url, schema, pool_size=1)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.execute(
            f"CREATE TABLE {schema}.records_outbox (LIKE transactions.records_outbox INCLUDING ALL)"
        )
        await conn.execute(f"ANALYZE {schema}.records_outbox")  # empty, as at start
        await conn.execute(
            f"INSERT INTO {schema}.records_outbox (event_id, topic, key, payload)"
            " SELECT gen_random_uuid(), 'audit_log', 'k' || n, jsonb_build_object('n', n,"
            " 'pad', repeat('x', 400)) FROM generate_series(1, 20000) n"
        )
        relay = OutboxRelay(db, tx_models.records_outbox, "plan-test", NoSink())
        async with db.raw() as raw, raw.transaction():
            await raw.execute(SEQSCAN_OFF)
            (explained,) = await raw.fetchrow(
                f"EXPLAIN (ANALYZE, FORMAT JSON) {relay.claim_sql}", relay._space
            )
        # (json decoded already by the pool's codec)
        root = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
        read = max(n["Actual Rows"] * n.get("Actual Loops", 1) for n in _nodes(root))
        assert read <= 2 * relay.batch_size, json.dumps(root)[:3000]
        assert not any(
            "Sort Space Type" in n and n["Sort Space Type"] == "Disk" for n in _nodes(root)
        )
    finally:
        await db.dispose()
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
