"""MongoDB (wire protocol) access through PyMongo's async client: audit and logs."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase


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
    await db.audit_log.create_index("audit_id", unique=True, sparse=True)
