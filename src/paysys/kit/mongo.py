"""MongoDB (wire protocol) access through PyMongo's async client: audit and logs."""

from __future__ import annotations

from typing import Any

import structlog
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from paysys.kit.context import client_ip_var, current_request_id
from paysys.kit.events import utcnow

log = structlog.get_logger()


def make_mongo(url: str, database: str) -> tuple[AsyncMongoClient[Any], AsyncDatabase[Any]]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        url, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000, tz_aware=True
    )
    return client, client[database]


async def ensure_indexes(db: AsyncDatabase[Any]) -> None:
    await db.transaction_logs.create_index("transaction_id", unique=True)
    await db.notifications.create_index([("event_id", 1), ("user_id", 1), ("kind", 1)], unique=True)
    await db.audit_log.create_index([("at", -1)])
    await db.audit_log.create_index("actor_user_id")
    await db.audit_log.create_index([("details.transaction_id", 1), ("action", 1)])


async def audit(
    db: AsyncDatabase[Any],
    action: str,
    actor_user_id: str | None,
    details: dict[str, Any] | None = None,
    *,
    ip: str | None = None,
    correlation_id: str | None = None,
) -> None:
    # Written after the business commit: the audit trail must never block or undo a
    # committed change, so a MongoDB outage is logged (with the record) instead.
    record = {
        "action": action,
        "actor_user_id": actor_user_id,
        "ip": ip if ip is not None else client_ip_var.get(),
        "correlation_id": correlation_id or current_request_id(),
        "at": utcnow(),
        "details": details or {},
    }
    try:
        await db.audit_log.insert_one(record)
    except Exception as exc:
        log.error("audit_write_failed", audit=str(record), error=str(exc)[:200])
