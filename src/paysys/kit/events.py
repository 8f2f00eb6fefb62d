"""The event envelope of the contract: one shape for every Kafka message."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr

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
    # The message as it came from Kafka, when it did (a webhook sends those bytes).
    _raw: str | None = PrivateAttr(default=None)

    @property
    def raw(self) -> str | None:
        return self._raw
