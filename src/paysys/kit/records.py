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

import orjson
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from sqlalchemy import MetaData, Table
from sqlalchemy.ext.asyncio import AsyncSession

from paysys.kit.context import client_ip_var, current_request_id
from paysys.kit.events import utcnow
from paysys.kit.outbox import insert_rows, outbox_table

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

    def row(self, collection: str, doc: dict[str, Any]) -> tuple[Any, ...]:
        """One record as the values of a raw insert: (id, collection, key, payload JSON),
        like `Outbox.row`."""
        key = ":".join(str(doc[k]) for k in COLLECTION_KEYS[collection])
        # orjson: a tenth of the standard library's CPU; datetimes as isoformat() writes
        # them, UUIDs as str() (tests/unit/test_records_json.py)
        return uuid.uuid4(), collection, key, orjson.dumps(doc).decode()

    async def add_rows(self, session: AsyncSession, rows: list[tuple[Any, ...]]) -> None:
        await insert_rows(session, self.table, rows)

    async def audit(
        self,
        session: AsyncSession,
        action: str,
        actor_user_id: str | None,
        details: dict[str, Any] | None = None,
        *,
        ip: str | None = None,
    ) -> None:
        """One security-relevant or money-moving action for `audit_log`."""
        await self.add_rows(session, [self.audit_row(action, actor_user_id, details, ip=ip)])

    def audit_row(
        self,
        action: str,
        actor_user_id: str | None,
        details: dict[str, Any] | None = None,
        *,
        ip: str | None = None,
        audit_id: str | None = None,
        at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> tuple[Any, ...]:
        return self.row(
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
    """Writes relayed records to their MongoDB collections, one bulk insert per
    collection. A record's `_id` is its key, so a redelivered record is refused by the
    primary key (duplicate key, 11000) and left as it is: written once, and without the
    lookup an upsert would cost (on FerretDB, a scan of the collection per write)."""

    def __init__(self, mongo: AsyncDatabase[Any]) -> None:
        self.mongo = mongo

    async def publish(self, rows: Sequence[Any]) -> None:
        docs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            doc = {"_id": row.key, **row.payload}
            for field in TIME_FIELDS:
                if isinstance(doc.get(field), str):
                    doc[field] = datetime.fromisoformat(doc[field])
            docs[row.topic].append(doc)
        for collection, batch in docs.items():
            try:
                await self.mongo[collection].insert_many(batch, ordered=False)
            except BulkWriteError as exc:
                others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
                if others or exc.details.get("writeConcernErrors"):
                    raise

    async def close(self) -> None:
        return None
