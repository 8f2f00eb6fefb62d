"""Records for MongoDB (the audit trail, transaction logs, notification records), written
in the same database transaction as the change they describe, to a records outbox that
a relay moves to MongoDB. A MongoDB outage delays records and loses none; MongoDB is
never on a request's path; a relayed record is written once (upsert on its key)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from sqlalchemy import MetaData, Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.context import client_ip_var, current_request_id
from paysys.kit.events import utcnow
from paysys.kit.outbox import mark_written, outbox_table

# Each collection a record may go to, with the fields that identify one record there.
COLLECTION_KEYS: dict[str, tuple[str, ...]] = {
    "audit_log": ("audit_id",),
    "transaction_logs": ("transaction_id",),
    "notifications": ("event_id", "user_id", "kind"),
}
# Fields stored as ISO strings in the outbox row and as dates in MongoDB.
TIME_FIELDS = ("at", "sent_at", "created_at", "finished_at")


def records_table(metadata: MetaData) -> Table:
    # Same shape as the event outbox (the topic is the collection), so one relay moves both.
    return outbox_table(metadata, name="records_outbox")


class Records:
    """Adds records to the records outbox, inside the caller's transaction."""

    def __init__(self, table: Table) -> None:
        self.table = table

    async def add(self, session: AsyncSession, collection: str, doc: dict[str, Any]) -> None:
        keys = COLLECTION_KEYS[collection]
        mark_written(session, self.table)
        await session.execute(
            insert(self.table).values(
                event_id=uuid.uuid4(),
                topic=collection,
                key=":".join(str(doc[k]) for k in keys),
                payload={
                    k: v.isoformat() if isinstance(v, datetime) else v for k, v in doc.items()
                },
            )
        )

    async def audit(
        self,
        session: AsyncSession,
        action: str,
        actor_user_id: str | None,
        details: dict[str, Any] | None = None,
        *,
        ip: str | None = None,
        audit_id: str | None = None,
        at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """One security-relevant or money-moving action for `audit_log`."""
        await self.add(
            session,
            "audit_log",
            {
                "audit_id": audit_id or str(uuid.uuid4()),
                "action": action,
                "actor_user_id": actor_user_id,
                "ip": ip if ip is not None else client_ip_var.get(),
                "correlation_id": correlation_id or current_request_id(),
                "at": at or utcnow(),
                "details": details or {},
            },
        )


class MongoSink:
    """Writes relayed records to their MongoDB collections, one bulk write per
    collection; a record already there (a redelivery) is left as it is."""

    def __init__(self, mongo: AsyncDatabase[Any]) -> None:
        self.mongo = mongo

    async def publish(self, rows: Sequence[Any]) -> None:
        ops: dict[str, list[UpdateOne]] = defaultdict(list)
        for row in rows:
            doc = dict(row.payload)
            for field in TIME_FIELDS:
                if isinstance(doc.get(field), str):
                    doc[field] = datetime.fromisoformat(doc[field])
            key = {k: doc[k] for k in COLLECTION_KEYS[row.topic]}
            ops[row.topic].append(UpdateOne(key, {"$setOnInsert": doc}, upsert=True))
        for collection, batch in ops.items():
            await self.mongo[collection].bulk_write(batch, ordered=False)

    async def close(self) -> None:
        return None
