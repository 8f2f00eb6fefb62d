"""The audit trail: security-relevant actions recorded in the same database transaction
as the change they describe (or alone, for actions that change nothing, such as a failed
login), then relayed to MongoDB `audit_log`. A MongoDB outage delays records; it never
loses them, and a relayed record is written once (upsert on its audit_id)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import MetaData, Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.context import client_ip_var, current_request_id
from paysys.kit.events import utcnow
from paysys.kit.outbox import outbox_table


def audit_table(metadata: MetaData) -> Table:
    # Same shape as the event outbox, so the same relay moves it.
    return outbox_table(metadata, name="audit_outbox")


class AuditTrail:
    def __init__(self, table: Table) -> None:
        self.table = table

    async def record(
        self,
        session: AsyncSession,
        action: str,
        actor_user_id: str | None,
        details: dict[str, Any] | None = None,
        *,
        ip: str | None = None,
    ) -> None:
        audit_id = uuid.uuid4()
        await session.execute(
            insert(self.table).values(
                event_id=audit_id,
                topic="audit",
                key=str(audit_id),
                payload={
                    "audit_id": str(audit_id),
                    "action": action,
                    "actor_user_id": actor_user_id,
                    "ip": ip if ip is not None else client_ip_var.get(),
                    "correlation_id": current_request_id(),
                    "at": utcnow().isoformat(),
                    "details": details or {},
                },
            )
        )


class MongoAuditSink:
    """Writes relayed audit rows to MongoDB `audit_log`."""

    def __init__(self, mongo: AsyncDatabase[Any]) -> None:
        self.mongo = mongo

    async def publish(self, rows: Sequence[Any]) -> None:
        ops = []
        for row in rows:
            doc = dict(row.payload)
            doc["at"] = datetime.fromisoformat(doc["at"])
            ops.append(UpdateOne({"audit_id": doc["audit_id"]}, {"$setOnInsert": doc}, upsert=True))
        await self.mongo.audit_log.bulk_write(ops, ordered=False)

    async def close(self) -> None:
        return None
