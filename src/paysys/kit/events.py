"""The event envelope of the contract: one shape for every Kafka message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

TOPICS = (
    "user.registered",
    "wallet.created",
    "wallet.funds_added",
    "wallet.funds_deducted",
    "wallet.funds_held",
    "wallet.funds_released",
    "payment.processed",
    "transaction.authorized",
    "transaction.completed",
    "transaction.failed",
    "transaction.voided",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class EventEnvelope(BaseModel):
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    event_type: str
    occurred_at: datetime = Field(default_factory=utcnow)
    producer: str
    schema_version: int = 1
    correlation_id: str | None = None
    data: dict[str, Any]
